"""Fuzzing the SIP stack: `python -m bench.fuzz.run` (see run.py)."""
