"""Shared fixtures: isolated registries, fake installed distributions, recipe files."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import textwrap
from collections.abc import Iterator
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
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No weights anywhere and no network: the torch hub cache and srframe's cache are empty folders under
    tmp_path (a test may plant files there) and SRFRAME_OFFLINE=1."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SRFRAME_CACHE", str(tmp_path / "srframe"))
    monkeypatch.setenv("SRFRAME_OFFLINE", "1")
    return tmp_path


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


# Options whose value is where a command writes; everything else named on a command line is read.
_OUTPUT_OPTIONS = ("-o", "--out", "--output", "--json", "--run-dir")


def _cli_inputs(argv: list[str], cwd: Path | None = None) -> list[Path]:
    """Every file a command line reads: files named on it and the files inside folders named on it,
    outside the folders it writes to (``-o``, ``--json``, ``--run-dir``, and ``report``'s RUN_DIR/report).
    Relative paths are taken from ``cwd`` (default: this process's)."""
    args = [str(a) for a in argv]
    here = Path(cwd) if cwd is not None else Path.cwd()
    outputs = [(here / args[i + 1]).resolve() for i, a in enumerate(args[:-1]) if a in _OUTPUT_OPTIONS]
    if "report" in args:
        outputs += [(here / a).resolve() / "report" for a in args if len(a) < 1024 and (here / a).is_dir()]
    named = [here / a for i, a in enumerate(args) if (i == 0 or args[i - 1] not in _OUTPUT_OPTIONS)
             and len(a) < 1024 and (here / a).exists()]
    files = []
    for path in named:
        for file in [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()):
            if not any(file.resolve().is_relative_to(out) for out in outputs):
                files.append(file)
    return files


@contextlib.contextmanager
def inputs_unchanged(argv: list[str], cwd: Path | None = None) -> Iterator[None]:
    """Assert that running the command line inside the block changed or removed none of the files it reads."""
    files = _cli_inputs(argv, cwd)

    def digests() -> dict[Path, str | None]:
        return {f: hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else None for f in files}

    before = digests()
    try:
        yield
    finally:
        changed = [str(f) for f, digest in digests().items() if digest != before[f]]
        assert not changed, f"srframe {' '.join(map(str, argv))} changed or removed its inputs: {changed}"


@pytest.fixture(autouse=True)
def cli_leaves_its_inputs_unchanged(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Every test that runs ``srframe.cli.main`` checks that no file it reads was changed or removed."""
    import srframe.cli

    original = srframe.cli.main

    def main(argv=None):
        with inputs_unchanged(list(argv or [])):
            return original(argv)

    monkeypatch.setattr(srframe.cli, "main", main)
    if getattr(request.module, "main", None) is original:
        monkeypatch.setattr(request.module, "main", main)
