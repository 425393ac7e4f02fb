"""Packaged data (seeds, sample corpus)."""
