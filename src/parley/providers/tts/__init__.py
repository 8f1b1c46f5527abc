"""Text-to-speech providers, one module per engine or vendor."""
