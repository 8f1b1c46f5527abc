"""Speech-to-text providers, one module per engine or vendor."""
