"""Packaged benchmark data: a small XCOPA-format set of our own and lm-eval's prompt words."""
