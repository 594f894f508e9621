"""Standard baselines, one file each."""
