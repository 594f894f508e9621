"""Fusion models: the registry, the shared interface, encoders, blocks, baselines, methods."""
