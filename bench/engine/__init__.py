"""Conversation engine benchmarks."""
