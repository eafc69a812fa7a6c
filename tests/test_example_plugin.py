"""The example plugin package (examples/fft_loss_plugin), built and pip-installed as a user would, works
with srframe through its entry point alone: listed, checked, trained, in the schema, and its own tests pass.

The package is copied to a temporary folder first (pip builds in the source tree) and installed with
``--target`` into a folder of its own, which each command gets on ``PYTHONPATH``.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from train_helpers import ROOT, checkpoint_steps, env, srframe_cli, train_records

EXAMPLE = ROOT / "examples" / "fft_loss_plugin"
RECIPE = EXAMPLE / "recipes" / "fft_x4.toml"
PROJECT = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
ORIGIN = f"{PROJECT['name']} {PROJECT['version']} (srframe_fft_loss)"


def summary() -> str:
    """The first line of the loss class's docstring, read from the source (it is not imported here)."""
    tree = ast.parse((EXAMPLE / "srframe_fft_loss" / "__init__.py").read_text(encoding="utf-8"))
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "FFTLoss"]
    return ast.get_docstring(cls).splitlines()[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the package's copy, the folder it is installed in): ``pip install --target`` from a copy of the example."""
    root = tmp_path_factory.mktemp("fft_loss_plugin")
    source = root / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = root / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--no-index", "--disable-pip-version-check", "--target", str(site), str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return source, site


def cli(installed: tuple[Path, Path], *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """``srframe ARGS`` in a subprocess that has the installed package on its path."""
    return srframe_cli(*args, cwd=cwd, extra_env={"PYTHONPATH": str(installed[1])})


def test_srframe_plugins_lists_the_plugin_and_its_loss(installed, tmp_path):
    result = cli(installed, "plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    plugins = {plugin["name"]: plugin for plugin in listing["plugins"]}
    assert plugins["fft_loss"] == {"name": "fft_loss", "origin": ORIGIN, "status": "loaded", "error": None,
                                   "components": [{"kind": "loss", "name": "fft"}]}
    components = {(c["kind"], c["name"]): c for c in listing["components"]}
    assert components["loss", "fft"] == {"kind": "loss", "name": "fft", "origin": ORIGIN, "summary": summary()}


@pytest.mark.slow
def test_recipe_check_accepts_the_example_recipe_and_checks_the_loss_settings(installed, tmp_path):
    result = cli(installed, "recipe", "check", RECIPE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    recipe = tomllib.loads(RECIPE.read_text(encoding="utf-8"))
    (stage,) = recipe["stages"]
    losses = ", ".join(f"{loss['kind']} x {loss.get('weight', 1):g}" for loss in stage["losses"])
    assert [loss["kind"] for loss in stage["losses"]] == ["l1", "fft"]
    assert f"stage '{stage['name']}': {stage['steps']} steps, {stage['optimizer']['kind']}, losses {losses}" in result.stdout

    misspelt = cli(installed, "recipe", "check", RECIPE, "--set", "stages[0].losses[1].mode=amplitud", cwd=tmp_path)
    assert misspelt.returncode == 2
    assert "stages[0].losses[1].mode" in misspelt.stderr and 'did you mean "amplitude"' in misspelt.stderr

    unloaded = cli(installed, "--disable-plugin", "fft_loss", "recipe", "check", RECIPE, cwd=tmp_path)
    assert unloaded.returncode == 2
    assert 'unknown loss "fft"' in unloaded.stderr and "fft_loss" in unloaded.stderr


@pytest.mark.slow
def test_srframe_run_trains_the_example_recipe(installed, tmp_path):
    run_dir = tmp_path / "run"
    tiny = ["stages[0].steps=4", "generator.num_blocks=1", "generator.channels=8",
            'data.train.names=["astronaut"]', "data.train.repeat=8", "data.train.patch_size=16",
            "data.train.batch_size=2", 'data.val.names=["chelsea"]',
            "train.log_every=1", "train.val_every=0", "train.checkpoint_every=2"]
    result = cli(installed, "run", RECIPE, "--run-dir", run_dir, *[a for s in tiny for a in ("--set", s)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    assert checkpoint_steps(run_dir)[-1] == 4
    assert (run_dir / "generator.safetensors").is_file()
    resolved = tomllib.loads((run_dir / "recipe.toml").read_text(encoding="utf-8"))
    fft = resolved["stages"][0]["losses"][1]
    assert fft["kind"] == "fft" and fft["mode"] == "complex"  # the default, recorded with the run
    records = train_records(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        assert math.isfinite(record["fft"]) and record["fft"] > 0
        assert record["total"] == pytest.approx(record["l1"] + fft["weight"] * record["fft"], rel=1e-5)


@pytest.mark.slow
def test_recipe_schema_describes_the_loss(installed, tmp_path):
    result = cli(installed, "recipe", "schema", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    loss = schema["definitions"]["loss fft"]
    assert loss["description"] == summary()
    assert loss["properties"]["kind"] == {"const": "fft"}
    assert loss["properties"]["mode"] == {"enum": ["complex", "amplitude"], "default": "complex"}
    assert loss["additionalProperties"] is False

    validator = jsonschema.Draft7Validator(schema)  # what an editor does with it
    recipe = tomllib.loads(RECIPE.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(recipe)) == []
    recipe["stages"][0]["losses"][1]["mode"] = "phase"
    (error,) = validator.iter_errors(recipe)
    assert list(jsonschema.exceptions.best_match([error]).absolute_path) == ["stages", 0, "losses", 1, "mode"]


@pytest.mark.slow
def test_the_package_passes_its_own_tests_when_installed(installed):
    source, site = installed
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-ra", "tests"],
                            cwd=source, env=env(PYTHONPATH=str(site)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout
