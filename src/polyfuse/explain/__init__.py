"""Inspection: attention maps and per-modality contributions, as numbers and figures."""
