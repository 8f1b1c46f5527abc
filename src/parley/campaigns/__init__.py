"""Outbound campaigns: a list of recipients dialed by an agent within calling windows, caps, a rate, a
do-not-call list and a retry policy keyed to the outcome (see docs/campaigns.md).

Pure decisions (`numbers`, `windows`, `policy`, `csv_import`) say why in words; `store` keeps campaigns,
recipients, attempts and the DNC list in the calls database; `runner` turns due recipients into queued
calls for the existing dialer and records how each ended.
"""
