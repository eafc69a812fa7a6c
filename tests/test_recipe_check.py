"""`srframe recipe check` catches what building would: typo keys in every kind of table, the rules
components declare, files that must exist, optimiser settings; all problems in one report."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

import srframe
from srframe.cli import main
from srframe.errors import RecipeError, SrframeError
from srframe.plugins import PluginHost
from srframe.recipe import load_recipe
from srframe.registry import Registry
from srframe.train import optimizers

RECIPE = """
    scale = 4
    [generator]
    kind = "srresnet"
    num_blocks = 1
    [degradation]
    kind = "bicubic"
    [data.train]
    kind = "samples"
    patch_size = 32
    [data.val]
    kind = "samples"
    names = ["chelsea"]
    [[stages]]
    name = "pixel"
    steps = 10
    optimizer = { kind = "adam", lr = 1e-4 }
    losses = [{ kind = "mse" }]
    [[stages]]
    name = "gan"
    steps = 10
    discriminator = { kind = "srgan" }
    losses = [{ kind = "l1" }, { kind = "adversarial", weight = 1e-3 }]
"""


@pytest.fixture
def check(write):
    """Problems (key path -> message) of RECIPE with ``--set`` overrides; {} when it checks."""
    path = write("recipe.toml", RECIPE)

    def problems(*overrides: str) -> dict[str, str]:
        try:
            load_recipe(path, list(overrides))
        except RecipeError as exc:
            return {p.path: p.message for p in exc.problems}
        return {}

    return problems


def test_the_recipe_used_here_checks(check):
    assert check() == {}


@pytest.mark.parametrize("override, path", [
    ("generator.num_blcks=2", "generator.num_blcks"),
    ("degradation.scle=4", "degradation.scle"),
    ("stages[0].losses[0].wieght=0.5", "stages[0].losses[0].wieght"),
    ("stages[1].discriminator.chanels=32", "stages[1].discriminator.chanels"),
    ("data.train.batchsize=8", "data.train.batchsize"),
    ("data.val.nmes=['coffee']", "data.val.nmes"),
    ("stages[0].optimizer.betass=[0.9, 0.99]", "stages[0].optimizer.betass"),
    ("stages[1].discriminator_optimizer={ lrr = 1e-4 }", "stages[1].discriminator_optimizer.lrr"),
    ("stages[0].stepz=3", "stages[0].stepz"),
    ("sede=3", "sede"),
])
def test_a_typo_key_in_every_kind_of_table_is_an_error(check, override, path):
    found = check(f"{override}")
    assert path in found, found
    assert "unknown key" in found[path] and "did you mean" in found[path]


@pytest.mark.parametrize("override, path, expected", [
    ("data.train.patch_size=98", "data.train.patch_size",
     "98 is not a multiple of the scale 4: the LR patch would not have whole pixels; use e.g. 96"),
    ("scale=5", "generator.scale", "5 is an integer: expected one of 2, 3, 4, 8 (the value comes from the recipe's scale = 5)"),
    ("stages[0].optimizer.lr=-1.0", "stages[0].optimizer.lr",
     'optimizer "adam" refuses these settings: Invalid learning rate: -1.0'),
    ("stages[0].losses[0]={ kind = 'vgg', layers = 'relu5_4', backbone = 'vgg16' }", "stages[0].losses[0].layers",
     'vgg16 has no layer "relu5_4"'),
    ("stages[0].losses[0]={ kind = 'vgg', weights = 'nope.pth' }", "stages[0].losses[0].weights",
     'nope.pth" does not exist: expected an existing file'),
    ("data.train={ kind = 'image_folder', root = 'no/such/folder' }", "data.train.root",
     'folder" does not exist: expected an existing folder; put the images there'),
    ("stages[0].init_generator='nope/run'", "stages[0].init_generator",
     "no such file or run directory: "),
    ("stages[1].discriminator_warmup=10", "stages[1].discriminator_warmup", "the generator would never be trained"),
])
def test_what_building_would_refuse_is_refused_by_the_check(check, override, path, expected):
    found = check(override)
    assert path in found, found
    assert expected in found[path]


def test_a_missing_training_folder_says_make_demo_needs_none(check):
    found = check("data.train={ kind = 'image_folder', root = 'DIV2K_train_HR' }")
    assert "DIV2K" in found["data.train.root"] and "`make demo`" in found["data.train.root"]


def test_building_from_python_raises_srframe_errors_naming_the_key(tmp_path):
    cases = [
        ({"kind": "loss", "name": "l1", "wieght": 0.5}, "wieght"),
        ({"kind": "generator", "name": "srresnet", "scale": 5}, "scale"),
        ({"kind": "loss", "name": "vgg", "backbone": "vgg16", "layers": "relu5_4"}, "layers"),
        ({"kind": "dataset", "name": "samples", "scale": 4, "patch_size": 98}, "patch_size"),
        ({"kind": "dataset", "name": "image_folder", "scale": 4, "root": tmp_path / "none"}, "root"),
    ]
    for case, key in cases:
        params = dict(case)
        kind, name = params.pop("kind"), params.pop("name")
        with pytest.raises(SrframeError) as caught:
            srframe.build(kind, name, **params)
        assert isinstance(caught.value, RecipeError) and caught.value.problems[0].path == key, caught.value


def test_every_problem_is_reported_at_once(check):
    found = check("generator.num_blcks=2", "stages[0].losses=[]", "stages[1].name='pixel'",
                  "stages[1].discriminator={ kind = 'srgan', chanels = 3 }",
                  "stages[0].losses=[{ kind = 'adversarial' }, { kind = 'mse', wieght = 1 }]")
    assert set(found) == {"generator.num_blcks", "stages[0].losses[0]", "stages[0].losses[1].wieght",
                          "stages[1].name", "stages[1].discriminator.chanels"}
    assert "needs a discriminator" in found["stages[0].losses[0]"]
    assert '"pixel" is the name of stages[0] too' in found["stages[1].name"]
    found = check("stages[0].losses=[]", "stages[0].steps=0")
    assert set(found) == {"stages[0].losses", "stages[0].steps"}


def test_messages_speak_recipe_language(check):
    found = check("stages[0].stepz=3", "data.val.foo=1")
    assert "unknown key for a stage" in found["stages[0].stepz"]
    assert 'unknown key for dataset "samples"' in found["data.val.foo"]
    assert not any("Spec" in message for message in found.values())


def test_names_of_a_kind_are_plural_in_english():
    with pytest.raises(SrframeError, match="Registered losses: adversarial, charbonnier, l1, mse, vgg"):
        srframe.build("loss", "msee")


def test_a_missing_installation_is_named(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    host = PluginHost(Registry())
    with pytest.raises(SrframeError) as caught:
        host.registry.build("generator", "srresnet")
    message = str(caught.value)
    assert "Registered generators: (none)" in message
    assert "srframe is imported from" in message and "without being installed" in message
    assert f"pip install -e {Path(srframe.__file__).resolve().parents[1]}" in message


def test_an_installed_plugin_can_be_left_unloaded(monkeypatch, capsys):
    monkeypatch.setenv("SRFRAME_DISABLE_PLUGINS", "kornia_degrade, srgan")
    host = PluginHost(Registry())
    assert "srgan" not in {e.name for e in host.registry.entries("discriminator")}
    assert host.plugins["srgan"].status == "disabled" and host.plugins["kornia_degrade"].status == "disabled"
    assert host.plugins["srresnet"].status == "loaded"
    with pytest.raises(SrframeError, match=r"Plugins left unloaded .*: kornia_degrade, srgan"):
        host.registry.get("loss", "mse")


def test_the_cli_flag_leaves_a_plugin_unloaded(capsys, monkeypatch):
    import json

    from srframe import plugins

    monkeypatch.setattr(plugins, "host", PluginHost(Registry()))
    monkeypatch.setattr(plugins, "registry", plugins.host.registry)
    assert main(["--disable-plugin", "kornia_degrade", "plugins", "--json"]) == 0
    listing = {p["name"]: p["status"] for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert listing["kornia_degrade"] == "disabled" and listing["srgan"] == "loaded"


@pytest.mark.parametrize("name", sorted(optimizers._TORCH_OPTIMIZERS))
def test_the_fast_optimizer_table_agrees_with_timm(name):
    timm_optim = pytest.importorskip("timm.optim")
    ours = optimizers.find(name)
    built = timm_optim.create_optimizer_v2([torch.nn.Parameter(torch.zeros(1))], opt=name, lr=0.1, weight_decay=0)
    assert type(built) is ours.cls
    mine = ours.cls([torch.nn.Parameter(torch.zeros(1))], **{**ours.defaults, "lr": 0.1, "weight_decay": 0})
    assert built.defaults == mine.defaults  # every setting, as timm's factory builds it


def test_an_optimizer_only_timm_has_is_found_and_checked(check):
    assert check("stages[0].optimizer={ kind = 'lamb', lr = 1e-3 }") == {}
    found = check("stages[0].optimizer={ kind = 'lambb' }")
    assert 'unknown optimizer "lambb"; did you mean "lamb"' in found["stages[0].optimizer.kind"]


def test_init_generator_must_hold_a_generator_that_fits(check, tmp_path):
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("hello")
    found = check(f"stages[0].init_generator='{not_a_model}'")
    assert "not a weights file srframe reads" in found["stages[0].init_generator"]
    x2 = srframe.save_component(srframe.build("generator", "srresnet", scale=2, num_blocks=1), tmp_path / "x2.safetensors")
    found = check(f"stages[0].init_generator='{x2}'")
    assert "built differently: scale = 2 there, 4 here" in found["stages[0].init_generator"]
    fits = srframe.save_component(srframe.build("generator", "srresnet", num_blocks=1), tmp_path / "fits.safetensors")
    assert check(f"stages[0].init_generator='{fits}'") == {}


def test_a_broken_check_params_is_blamed_on_the_plugin(registry):
    from srframe.interfaces import Loss

    class Broken(Loss):
        def __init__(self, eps: float = 0.1):
            super().__init__()

        @staticmethod
        def check_params(params):
            yield "eps needs to be small"  # not a (key, message) pair

    registry.add("loss", "broken", Broken)
    with pytest.raises(SrframeError, match=r'loss "broken".*its check_params failed with ValueError.*yielding '
                                           r"\(key, message\) pairs; fix the plugin"):
        registry.build("loss", "broken", {})

    class Method(Loss):
        def check_params(self, params):
            return []

    with pytest.raises(SrframeError, match="check_params must be a @staticmethod or @classmethod"):
        registry.add("loss", "method", Method)


def test_a_hook_without_hookimpl_fails_loudly(host, installed):
    installed("unmarked", {"unmarked_plugin": "def srframe_register(registry):\n    pass\n"},
              {"unmarked": "unmarked_plugin"})
    host.registry.entries()
    assert host.plugins["unmarked"].status == "failed"
    assert "not marked with @srframe.hookimpl" in host.plugins["unmarked"].error
