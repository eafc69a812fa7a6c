"""The command line: output, exit codes, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from srframe.cli import main
from srframe.errors import RecipeError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "recipes" / "quickstart_x4.toml")


def test_help_from_the_installed_console_script():
    script = Path(sys.executable).parent / "srframe"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "plugins", "recipe", "weights"):
        assert command in result.stdout


def test_plugins_json_lists_the_reference_plugins(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["srresnet"]["status"] == "loaded"
    assert {"kind": "generator", "name": "srresnet"} in plugins["srresnet"]["components"]
    assert plugins["srgan"]["origin"].startswith("srframe ")
    assert {(c["kind"], c["name"]) for c in listing["components"]} >= {("loss", "mse"), ("generator", "srresnet")}


def test_plugins_table(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "srresnet" in out and "loaded" in out and "charbonnier" in out


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_checks(recipe, tmp_path, capsys):
    """Every shipped recipe checks once what it reads exists: its data folders (two images stand in) and
    the runs its stages start from (a saved generator stands in)."""
    import numpy as np
    from PIL import Image

    import srframe
    from srframe.recipe import load_document

    document = load_document(recipe).data
    overrides = []
    for section in ("train", "val"):
        if document.get("data", {}).get(section, {}).get("kind") == "image_folder":
            folder = tmp_path / section
            folder.mkdir()
            for i in range(2):
                Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(folder / f"{i}.png")
            overrides += ["--set", f'data.{section}.root="{folder}"']
    starts = [i for i, stage in enumerate(document["stages"]) if "init_generator" in stage]
    if starts:
        generator = srframe.save_component(srframe.build("generator", "srresnet"), tmp_path / "g.safetensors")
        overrides += [arg for i in starts for arg in ("--set", f'stages[{i}].init_generator="{generator}"')]
    assert main(["recipe", "check", str(recipe), *overrides]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_a_recipe_whose_starting_run_is_missing_says_to_train_it_first(capsys):
    assert main(["recipe", "check", str(ROOT / "recipes" / "srgan_x4.toml")]) == 2
    err = capsys.readouterr().err
    assert "data.train.root" in err and "DIV2K" in err and "`make demo`" in err  # the data folder too
    assert "stages[0].init_generator" in err and "runs/srresnet_x4" in err and "Train that run first" in err


def test_recipe_show_prints_the_resolved_recipe(capsys):
    assert main(["recipe", "show", QUICKSTART, "--set", "stages[0].steps=7"]) == 0
    resolved = tomllib.loads(capsys.readouterr().out)
    assert resolved["name"] == "quickstart_x4" and resolved["stages"][0]["steps"] == 7
    assert resolved["generator"]["num_blocks"] == 6 and resolved["generator"]["scale"] == 4
    assert main(["recipe", "show", "--raw", QUICKSTART]) == 0
    raw = tomllib.loads(capsys.readouterr().out)
    assert raw["generator"] == {"kind": "srresnet", "num_blocks": 6, "channels": 32, "norm": "none", "skip": "bicubic"}


def test_errors_are_one_message_and_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('scale = 4\n[generator]\nkind = "srresnet"\nnum_block = 3\n')
    assert main(["recipe", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "srframe: error:" in err and "generator.num_block" in err and 'did you mean "num_blocks"' in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(RecipeError):
        main(["--debug", "recipe", "check", str(tmp_path / "missing.toml")])


def test_run_checks_the_recipe_before_training(tmp_path, capsys):
    assert main(["run", QUICKSTART, "--run-dir", str(tmp_path / "run"), "--set", "generator.num_block=2"]) == 2
    assert 'did you mean "num_blocks"' in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_weights_list_shows_where_weights_are_looked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SRFRAME_CACHE", str(tmp_path))
    (tmp_path / "vgg16_features.safetensors").write_bytes(b"")  # present, but not what srframe writes there
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "torch hub cache" in out and "srframe cache" in out and "refused" in out.replace("\n", " ")

    genuine = Path.home() / ".cache" / "srframe" / "vgg16_features.safetensors"
    if genuine.is_file():  # the real file, as `srframe weights fetch vgg16` writes it
        (tmp_path / "vgg16_features.safetensors").write_bytes(genuine.read_bytes())
        assert main(["weights", "list"]) == 0
        assert "verified" in capsys.readouterr().out


def test_weights_fetch_offline_explains_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("SRFRAME_OFFLINE", "1")
    assert main(["weights", "fetch", "vgg19"]) == 2
    err = capsys.readouterr().err
    assert "no ImageNet weights for vgg19" in err and "vgg19-dcbb9e9d.pth" in err


def test_a_recipe_using_every_reference_component_checks(write, capsys):
    recipe = write("all.toml", """
        scale = 4
        [generator]
        kind = "srresnet"
        [[stages]]
        name = "pixel"
        steps = 1
        losses = [{ kind = "mse" }, { kind = "l1" }, { kind = "charbonnier", eps = 1e-6 }]
        [[stages]]
        name = "gan"
        steps = 1
        discriminator = { kind = "srgan" }
        losses = [{ kind = "vgg", layers = ["relu2_2", "relu5_4"] }, { kind = "adversarial", mode = "hinge", weight = 1e-3 }]
        """)
    assert main(["recipe", "check", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "losses mse x 1, l1 x 1, charbonnier x 1" in out and "vgg x 1, adversarial x 0.001, discriminator srgan" in out
