"""A third-party package, built and installed with pip, extends srframe through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "acme-sr-losses"
    version = "0.3.0"

    [project.entry-points.srframe]
    acme = "acme_sr_losses"
"""

MODULE = """
    import torch
    import srframe
    from srframe.interfaces import Loss

    class Huber(Loss):
        '''Smooth L1 between SR and HR.'''
        def __init__(self, delta: float = 1.0):
            super().__init__()
            self.delta = delta

        def forward(self, ctx):
            return torch.nn.functional.huber_loss(ctx.sr, ctx.hr, delta=self.delta)

    @srframe.hookimpl
    def srframe_register(registry):
        registry.add("loss", "huber", Huber)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The package built from its own pyproject.toml and pip-installed into a folder."""
    root = tmp_path_factory.mktemp("acme")
    (root / "acme_sr_losses").mkdir()
    (root / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (root / "acme_sr_losses" / "__init__.py").write_text(textwrap.dedent(MODULE))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(target), str(root)],
                   check=True, capture_output=True)
    return target


def srframe(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([str(Path(sys.executable).parent / "srframe"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True)


def test_installed_package_is_discovered(site):
    result = srframe(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["acme"] == {"name": "acme", "origin": "acme-sr-losses 0.3.0 (acme_sr_losses)",
                               "status": "loaded", "error": None,
                               "components": [{"kind": "loss", "name": "huber"}]}


def test_its_loss_is_usable_from_a_recipe(site, tmp_path):
    recipe = tmp_path / "huber.toml"
    recipe.write_text(textwrap.dedent("""
        scale = 4
        [generator]
        kind = "srresnet"
        [[stages]]
        name = "huber"
        steps = 10
        losses = [{ kind = "huber", delta = 0.1, weight = 2 }]
    """))
    result = srframe(site, "recipe", "check", str(recipe))
    assert result.returncode == 0, result.stderr
    assert "losses huber x 2" in result.stdout
    bad = srframe(site, "recipe", "check", str(recipe), "--set", "stages[0].losses[0].delta=small")
    assert bad.returncode == 2 and "stages[0].losses[0].delta" in bad.stderr


def test_its_loss_builds_from_python(site):
    code = ("import torch, srframe; loss = srframe.build('loss', 'huber', delta=0.5); "
            "print(float(loss(srframe.LossContext(sr=torch.zeros(1, 3, 2, 2), hr=torch.ones(1, 3, 2, 2)))))")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(site)},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(0.5 * (1 - 0.5 * 0.5))  # Huber: delta * (|d| - delta / 2)
