"""Shared fixtures: isolated registries, fake installed distributions, recipe files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from srframe.plugins import PluginHost
from srframe.registry import Registry


@pytest.fixture
def host() -> PluginHost:
    """A plugin host over a fresh registry (entry points load on its first lookup)."""
    return PluginHost(Registry())


@pytest.fixture
def registry(host: PluginHost) -> Registry:
    return host.registry


@pytest.fixture
def write(tmp_path: Path):
    """Write a dedented text file under tmp_path and return its path."""

    def write_file(relative: str, text: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write_file


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make a fake installed distribution: modules plus a dist-info announcing entry points.

    ``installed("acme-sr", {"acme_sr": "source"}, {"acme": "acme_sr"})`` puts it on sys.path,
    where importlib.metadata finds it exactly as it finds a pip-installed package.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def make(dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            created.append(module)
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[srframe]\n{lines}", encoding="utf-8")
        return site

    yield make
    for module in created:
        sys.modules.pop(module, None)
