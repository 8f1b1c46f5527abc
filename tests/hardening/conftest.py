"""The phone stack and the webhook receiver of tests/telephony, for the SSRF test of the incoming-call webhook."""

from tests.telephony.conftest import agents, phone_stack, webhook_receiver  # noqa: F401  (fixtures)
