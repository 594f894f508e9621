"""Pretrained encoders that turn raw inputs (report text, images, whole slides) into features.

With a few hundred patients nobody trains a text or image encoder from scratch: a pretrained
backbone, frozen, embeds every input once, and the fusion model trains on the embeddings.
This layer sits below `polyfuse.data`, which applies a modality's `encoder` while reading it;
`polyfuse embed` writes the same embeddings to files. Heavy libraries (torch, the encoders'
packages, OpenSlide) are imported only when an encoder runs.
"""
