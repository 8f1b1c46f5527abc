"""Speech and language providers: STT, LLM, TTS, VAD."""
