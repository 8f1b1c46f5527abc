"""`parley` with bench/engine's instant STT/LLM/TTS registered (for `make cluster`-style benchmark runs):
`PARLEY="python -m bench.cluster.parley_instant" deploy/cluster.sh`."""

from bench.gateway.fakes import register_instant_providers
from parley.cli.main import main

register_instant_providers()
main()
