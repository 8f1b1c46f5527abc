"""Telephony: trunks, dispatch rules, and the SIP gateway joining calls to conversations."""
