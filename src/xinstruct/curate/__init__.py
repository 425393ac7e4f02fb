"""Corpus curation: read and prepare native text, then generate English instructions for it."""
