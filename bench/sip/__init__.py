"""SIP load benchmarks driven by SIPp (see run.py)."""
