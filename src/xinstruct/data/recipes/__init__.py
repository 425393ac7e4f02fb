"""Packaged experiment recipes (`xinstruct experiment NAME`)."""
