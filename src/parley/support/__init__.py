"""Small building blocks every layer may use: retries with backoff, task sets. Imports nothing of ours
but `parley.logging`."""
