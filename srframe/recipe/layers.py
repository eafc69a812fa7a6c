"""Reading recipe files: TOML, ``extends``, overrides, and where every value came from.

A :class:`Layered` document is the merged recipe plus the source (file or override) of each
value, so that error messages name the right file and relative paths resolve against the
file that wrote them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..schema import KeyPath, format_path, show


@dataclass(frozen=True)
class Source:
    label: str  # shown in messages: a recipe file, "--set ..." or "overrides"
    base_dir: Path  # relative paths written there resolve against this folder


@dataclass
class Layered:
    """A recipe document and the source of each of its values."""

    data: dict[str, Any]
    root: Source
    sources: dict[KeyPath, Source] = field(default_factory=dict)  # paths of values that are not tables

    @classmethod
    def from_data(cls, data: dict[str, Any], source: Source) -> Layered:
        return cls(data, source, {path: source for path in _value_paths(data, ())})

    def source_of(self, path: KeyPath) -> Source:
        """The source of the value at ``path``, or of the nearest enclosing value."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.sources:
                return self.sources[path[:end]]
        return self.root

    def merged_with(self, top: Layered) -> Layered:
        """This document with ``top`` laid over it: tables merge deeply, everything else is replaced.

        A table that chooses another component (a different ``kind``) replaces the base's table whole.
        """
        replaced = _replaced_tables(self.data, top.data, ())
        kept = {p: s for p, s in self.sources.items()
                if not any(_related(p, q) for q in top.sources) and not any(p[:len(r)] == r for r in replaced)}
        return Layered(_deep_merge(self.data, top.data), top.root, {**kept, **top.sources})

    def assign(self, path: KeyPath, value: Any, source: Source) -> None:
        """Set the value at ``path`` (a table value merges into an existing table)."""
        if not path:
            raise RecipeError(f"{source.label}: an override needs a key")
        node: Any = self.data
        for depth, part in enumerate(path[:-1]):
            node = self._step(node, part, path[: depth + 1], path[depth + 1], source)
        last = path[-1]
        if isinstance(last, int):
            self._check_index(node, last, path, source)
        elif not isinstance(node, dict):
            raise RecipeError(f"{source.label}: {format_path(path[:-1])} is not a table")
        merged = (isinstance(value, Mapping) and isinstance(last, str) and isinstance(node.get(last), dict)
                  and not _other_kind(node[last], dict(value)))
        written = {path + sub for sub in _value_paths(dict(value), ())} if isinstance(value, Mapping) else {path}
        # A table merged into an existing one keeps the sources of the keys it does not write.
        self.sources = {p: s for p, s in self.sources.items()
                        if not _related(p, path) or (merged and p not in written and p != path)}
        node[last] = _deep_merge(node[last], dict(value)) if merged else value
        self.sources.update(dict.fromkeys(written, source))

    def _step(self, node: Any, part: str | int, path: KeyPath, next_part: str | int, source: Source) -> Any:
        if isinstance(part, int):
            self._check_index(node, part, path, source)
            return node[part]
        if not isinstance(node, dict):
            raise RecipeError(f"{source.label}: {format_path(path[:-1])} is not a table")
        if part not in node:
            if isinstance(next_part, int):
                raise RecipeError(f"{source.label}: {format_path(path)} does not exist, so it has no [{next_part}]")
            node[part] = {}
        return node[part]

    @staticmethod
    def _check_index(node: Any, index: int, path: KeyPath, source: Source) -> None:
        where = format_path(path[:-1])
        if not isinstance(node, list):
            raise RecipeError(f"{source.label}: {where} is not an array, so it has no [{index}]")
        if not 0 <= index < len(node):
            raise RecipeError(f"{source.label}: {where} has {len(node)} item(s); index {index} is out of range")


def load_layers(path: Path, chain: tuple[Path, ...] = ()) -> Layered:
    """Read a recipe file and, recursively, the recipes it ``extends``."""
    path = Path(os.path.abspath(path))
    if path in chain:
        cycle = " -> ".join(_display(p) for p in (*chain[chain.index(path):], path))
        raise RecipeError(f"recipes extend each other in a cycle: {cycle}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark (Windows editors) is fine
    except FileNotFoundError:
        asked_by = f" (extended by {_display(chain[-1])})" if chain else ""
        raise RecipeError(f"recipe file not found: {_display(path)}{asked_by}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {_display(path)}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{_display(path)} is not valid TOML: {exc}") from exc
    source = Source(_display(path), path.parent)
    bases = data.pop("extends", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError(f"{source.label}: extends = {show(bases)}: expected a recipe path or an array of them")
    document = Layered.from_data(data, source)
    for base in reversed(bases):  # later bases win over earlier ones, the file itself over all
        document = load_layers(path.parent / base, (*chain, path)).merged_with(document)
    return document


_KEY = r"[A-Za-z0-9_-]+(?:\[\d+\])*"
_KEY_PATH = re.compile(rf"{_KEY}(?:\.{_KEY})*")


def parse_key_path(text: str) -> KeyPath:
    """``"stages[0].losses[1].weight"`` -> ``("stages", 0, "losses", 1, "weight")``."""
    if not _KEY_PATH.fullmatch(text):
        raise RecipeError(f"cannot read key path {text!r}: expected keys like stages[0].losses[1].weight")
    return tuple(int(index) if index else key for key, index in re.findall(r"([A-Za-z0-9_-]+)|\[(\d+)\]", text))


def parse_assignment(text: str) -> tuple[KeyPath, Any]:
    """``"stages[0].steps=10"`` -> (path, 10). The value is read as TOML; a bare word is a string."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set stages[0].steps=10")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parse_key_path(key.strip()), value


def _value_paths(node: Any, prefix: KeyPath) -> list[KeyPath]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _value_paths(value, prefix + (key,))]
    return [prefix]


def _related(a: KeyPath, b: KeyPath) -> bool:
    """One path lies within (or is) the other."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key, unless ``top``'s table chooses another ``kind``: then it replaces the base's."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _other_kind(merged[key], value):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _other_kind(base: dict[str, Any], top: dict[str, Any]) -> bool:
    return "kind" in top and "kind" in base and top["kind"] != base["kind"]


def _replaced_tables(base: Any, top: Any, prefix: KeyPath) -> list[KeyPath]:
    """The paths where ``top`` replaces a base table by one of another kind."""
    if not isinstance(base, dict) or not isinstance(top, dict):
        return []
    if _other_kind(base, top):
        return [prefix]
    return [path for key in top.keys() & base.keys() for path in _replaced_tables(base[key], top[key], prefix + (key,))]


def _display(path: Path) -> str:
    """A path as short as it can be said: relative to the working folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
