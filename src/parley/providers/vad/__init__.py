"""Voice-activity detectors."""
