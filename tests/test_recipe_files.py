"""Recipe files: extends, overrides, relative paths, and the resolved recipe."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from srframe.errors import RecipeError
from srframe.recipe import load_document, load_recipe
from srframe.recipe.layers import parse_assignment, parse_key_path

BASE = """
    scale = 4
    seed = 1
    [generator]
    kind = "srresnet"
    num_blocks = 16
    channels = 64
    [[stages]]
    name = "pretrain"
    steps = 100
    init_generator = "weights/start"
    losses = [{ kind = "mse" }]
"""
# init_generator must hold a generator when a recipe is checked: tests that load BASE from folder F save one
# at F/weights/start (built with its defaults, so it fits every generator table these tests write).


@pytest.fixture
def saved_generator(tmp_path):
    """``saved_generator(path)``: a srresnet saved at tmp_path/path (built with its defaults)."""
    import srframe

    def save(relative: str) -> Path:
        return srframe.save_component(srframe.build("generator", "srresnet"), tmp_path / relative)

    return save


def test_extends_merges_tables_and_replaces_arrays(write):
    write("base/srresnet.toml", BASE)
    child = write("child.toml", """
        extends = "base/srresnet.toml"
        seed = 7
        [generator]
        num_blocks = 4
        [[stages]]
        name = "fine"
        steps = 5
        losses = [{ kind = "l1" }, { kind = "mse", weight = 0.5 }]
    """)
    data = load_document(child).data
    assert data["seed"] == 7 and data["scale"] == 4
    assert data["generator"] == {"kind": "srresnet", "num_blocks": 4, "channels": 64}
    assert [s["name"] for s in data["stages"]] == ["fine"]  # arrays of tables are replaced whole
    assert "extends" not in data


def test_several_bases_later_wins(write):
    write("a.toml", 'seed = 1\nname = "a"\n')
    write("b.toml", "seed = 2\n")
    child = write("c.toml", 'extends = ["a.toml", "b.toml"]\n')
    assert load_document(child).data == {"seed": 2, "name": "a"}


def test_extends_chain_and_cycle(write):
    write("a.toml", 'extends = "b.toml"\nseed = 1\n')
    write("b.toml", 'extends = "sub/c.toml"\nscale = 2\n')
    write("sub/c.toml", 'extends = "../a.toml"\n')
    with pytest.raises(RecipeError, match=r"cycle: .*a\.toml -> .*b\.toml -> .*c\.toml -> .*a\.toml"):
        load_document(write("top.toml", 'extends = "a.toml"\n'))


def test_missing_base_names_the_file_that_extends_it(write):
    child = write("child.toml", 'extends = "nowhere.toml"\n')
    with pytest.raises(RecipeError, match=r"recipe file not found: .*nowhere\.toml \(extended by .*child\.toml\)"):
        load_document(child)


def test_invalid_toml_names_file_and_line(write):
    path = write("bad.toml", "scale = 4\nseed = = 1\n")
    with pytest.raises(RecipeError, match=r"bad\.toml is not valid TOML: .*line 2"):
        load_document(path)


def test_relative_paths_resolve_against_the_file_that_wrote_them(write, tmp_path, monkeypatch, saved_generator):
    write("base/srresnet.toml", BASE)
    saved_generator("base/weights/start")
    saved_generator("runs/pretrain/generator.safetensors")
    child = write("exp/child.toml", 'extends = "../base/srresnet.toml"\noutput_dir = "out"\n')
    spec = load_recipe(child).spec
    assert spec.stages[0].init_generator == tmp_path / "base" / "weights" / "start"
    assert spec.output_dir == tmp_path / "exp" / "out"
    monkeypatch.chdir(tmp_path / "exp")
    spec = load_recipe(child, ["stages[0].init_generator=../runs/pretrain"]).spec
    assert spec.stages[0].init_generator == tmp_path / "runs" / "pretrain"  # --set values: the working folder


def test_problems_name_the_file_the_value_came_from(write, saved_generator):
    saved_generator("weights/start")
    write("base.toml", BASE.replace("num_blocks = 16", "num_blocks = 1.5"))
    child = write("child.toml", 'extends = "base.toml"\nseed = "x"\n')
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(child)
    sources = {p.path: Path(p.source).name for p in excinfo.value.problems}
    assert sources == {"generator.num_blocks": "base.toml", "seed": "child.toml"}


@pytest.mark.parametrize("text, path, value", [
    ("stages[0].steps=10", ("stages", 0, "steps"), 10),
    ("generator.num_blocks = 8", ("generator", "num_blocks"), 8),
    ("stages[0].losses[1].weight=1e-3", ("stages", 0, "losses", 1, "weight"), 1e-3),
    ("generator.kind=srresnet", ("generator", "kind"), "srresnet"),
    ('name="x y"', ("name",), "x y"),
    ("plugins=['a', 'b']", ("plugins",), ["a", "b"]),
    ("stages[0].optimizer={ kind = 'adam', lr = 1e-3 }", ("stages", 0, "optimizer"), {"kind": "adam", "lr": 1e-3}),
])
def test_parse_assignment(text, path, value):
    assert parse_assignment(text) == (path, value)


@pytest.mark.parametrize("text", ["", "a..b", "[0].a", "a[x]", "a.b[0", "stages[0]steps"])
def test_bad_key_paths(text):
    with pytest.raises(RecipeError, match="cannot read key path"):
        parse_key_path(text)


def test_overrides_nested_and_indexed(write, saved_generator):
    saved_generator("weights/start")
    path = write("r.toml", BASE)
    spec = load_recipe(path, ["stages[0].steps=10", "generator.num_blocks=2", "generator={ channels = 16 }",
                              "stages[0].losses[0].weight=0.5", "stages[0].optimizer.lr=1e-3"]).spec
    assert spec.stages[0].steps == 10
    assert spec.generator.params["num_blocks"] == 2 and spec.generator.params["channels"] == 16
    assert spec.stages[0].losses[0].options.weight == 0.5
    assert spec.stages[0].optimizer.params == {"lr": 1e-3}
    spec = load_recipe(path, {"seed": 3, "stages[0].steps": 20}).spec
    assert (spec.seed, spec.stages[0].steps) == (3, 20)


def test_override_errors(write, saved_generator):
    saved_generator("weights/start")
    path = write("r.toml", BASE)
    with pytest.raises(RecipeError, match=r"--set stages\[3\]\.steps=1: stages has 1 item\(s\); index 3 is out of range"):
        load_recipe(path, ["stages[3].steps=1"])
    with pytest.raises(RecipeError, match="seed is not an array"):
        load_recipe(path, ["seed[0]=1"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(path, ["seed"])
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(path, ["stages[0].steps=ten"])
    (problem,) = excinfo.value.problems
    assert problem.source == "--set stages[0].steps=ten" and problem.path == "stages[0].steps"


def test_resolved_recipe_round_trips(write, tmp_path, saved_generator):
    saved_generator("weights/start")
    write("base.toml", BASE)
    child = write("exp/child.toml", 'extends = "../base.toml"\n[generator]\nnum_blocks = 4\n')
    recipe = load_recipe(child, ["seed=5"])
    text = recipe.to_toml()
    resolved = tomllib.loads(text)
    assert "extends" not in resolved and resolved["seed"] == 5 and resolved["name"] == "child"
    assert resolved["generator"] == {"kind": "srresnet", "num_blocks": 4, "channels": 64, "scale": 4, "norm": "batch",
                                     "activation": "prelu", "skip": "none", "in_channels": 3, "out_channels": 3,
                                     "upsample": "subpixel"}
    assert resolved["stages"][0]["init_generator"] == str(tmp_path / "weights" / "start")
    saved = recipe.save(tmp_path / "elsewhere.toml")
    again = load_recipe(saved)
    assert again.spec == recipe.spec  # the same recipe, from anywhere


def test_resolved_recipe_shows_defaults_of_nested_settings(write, tmp_path, saved_generator):
    saved_generator("weights/start")
    write("base.toml", BASE)
    child = write("child.toml", 'extends = "base.toml"\n[degradation]\nkind = "kornia_first_order"\n'
                                "[degradation.blur]\nsigma = [0.5, 1.5]\n")
    recipe = load_recipe(child)
    resolved = tomllib.loads(recipe.to_toml())["degradation"]
    assert resolved["blur"]["sigma"] == [0.5, 1.5] and resolved["blur"]["prob"] == 1.0  # written, and its default
    assert "sigma" in resolved["noise"] and "quality" in resolved["jpeg"]  # stages the recipe never mentions
    assert load_recipe(recipe.save(tmp_path / "resolved.toml")).spec == recipe.spec


def test_a_table_of_another_kind_replaces_the_base_table(write, saved_generator):
    saved_generator("weights/start")
    write("base.toml", BASE + '[data.train]\nkind = "image_folder"\nroot = "nowhere"\npatch_size = 32\n')
    child = write("child.toml", 'extends = "base.toml"\n[data.train]\nkind = "samples"\nnames = ["coffee"]\n'
                                "[generator]\nnum_blocks = 2\n")
    document = load_document(child)
    assert document.data["data"]["train"] == {"kind": "samples", "names": ["coffee"]}  # no root, no patch_size
    assert document.data["generator"]["channels"] == 64  # the same kind still merges key by key
    assert Path(document.source_of(("data", "train", "root")).label).name == "child.toml"
    assert load_recipe(child).spec.data.train.name == "samples"
