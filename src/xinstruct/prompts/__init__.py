"""Prompt templates kept as data (YAML beside this file), each with a version and its parser's name."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    parser: str
    system: str
    user: str
    assistant: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


def load_template(name_or_path: str) -> PromptTemplate:
    """A packaged template by name (`generate_instruction`) or a user's YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"prompt template not found: {path}")
        text = path.read_text(encoding="utf-8")
    else:
        res = resources.files(__package__) / f"{name_or_path}.yaml"
        if not res.is_file():
            names = sorted(p.name.removesuffix(".yaml") for p in resources.files(__package__).iterdir()
                           if p.name.endswith(".yaml"))
            raise ValueError(f"unknown prompt template {name_or_path!r}; packaged: {', '.join(names)}")
        text = res.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    missing = {"name", "version", "parser", "system", "user"} - set(data)
    if missing:
        raise ValueError(f"prompt template {name_or_path}: missing keys {sorted(missing)}")
    return PromptTemplate(**{k: str(v) for k, v in data.items()})
