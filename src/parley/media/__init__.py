"""Audio plumbing: frames, codecs, resampling, WAV files."""
