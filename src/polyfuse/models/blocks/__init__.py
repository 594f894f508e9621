"""Shared building blocks, written once and reused by every model."""
