"""Chat-model providers, one module per engine or vendor."""
