"""The conversation engine: turn-taking, barge-in, tools; transport-agnostic."""
