"""Packaged data (seeds, sample corpus, benchmark fixtures, questions)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_corpus() -> Path:
    """The small multilingual corpus that ships in the package (40 documents, 10 languages)."""
    return Path(str(resources.files("xinstruct.data.corpus") / "sample.jsonl"))
