"""Applying a fitted run to new patients: input contract, prediction, serving, export."""
