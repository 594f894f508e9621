"""polyfuse: multimodal fusion learning on heterogeneous medical data."""
