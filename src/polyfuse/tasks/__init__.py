"""Task heads, losses, metrics and loss balancing: classification, multilabel, survival, regression."""
