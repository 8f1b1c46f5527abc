"""Turn-taking: the turn policy and its detectors (silence, Smart Turn audio model, word rules)."""
