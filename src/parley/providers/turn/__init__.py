"""End-of-turn models: does the caller's audio sound finished? (Smart Turn v3.2, ONNX on the CPU)."""
