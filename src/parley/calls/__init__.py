"""Calls service: call records, state machine, queue, dialer, webhooks, export."""
