"""Configuration files: any config dataclass from a YAML file plus `key.path=value` overrides, and back.

    cfg = load_config(CurateConfig, "recipe.yaml", overrides=["generate.num_shots=4", "lang=sw"])

Unknown keys are errors that name the key, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from nested dicts, rejecting unknown keys by their dotted path."""
    if not isinstance(data, dict):
        raise ValueError(f"setting {where or 'recipe'} must be a mapping, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ValueError(f"unknown setting {path!r}; known here: {', '.join(sorted(names))}")
        hint = _optional_dataclass(hints[key]) if isinstance(value, dict) else hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            # Settings given for a section complete its default rather than replace it: `relevance.model.options.
            # n_threads=2` keeps the scorer's own default model.
            base = _default(cls, key)
            if dataclasses.is_dataclass(base) and isinstance(value, dict):
                value = _merge(dataclasses.asdict(base), value)
            value = from_dict(hint, value or {}, path)
        elif hint in (tuple[str, ...],) and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _optional_dataclass(hint: Any) -> Any:
    """The dataclass of an `X | None` setting (e.g. a second model that is off unless given), else `hint`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and dataclasses.is_dataclass(args[0]) else hint


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(text: str) -> Any:
    """A CLI value: YAML scalars, so `3`, `0.7`, `true`, `null` and `[a, b]` mean what they say."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`generate.model.options.n_threads=2` style overrides onto a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.path=value")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = _coerce(value)
    return data


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> Any:
    """Any config dataclass from an optional YAML file plus `key.path=value` overrides. `defaults` are
    top-level settings that replace the dataclass's own for one command; the file and overrides beat them."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"recipe not found: {p}")
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"recipe {p} must be a YAML mapping")
    data = {**(defaults or {}), **data}
    return from_dict(cls, apply_overrides(data, overrides or []))
