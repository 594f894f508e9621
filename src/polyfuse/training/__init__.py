"""Training: the Lightning module, fitting, cross-validation."""
