"""Evaluation: classical floors, statistics, robustness, efficiency, reports."""
