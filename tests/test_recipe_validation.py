"""Recipe validation: every kind of error names the file, the key path, the value and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from srframe.errors import RecipeError
from srframe.recipe import load_recipe

TYPED = """
    from pathlib import Path
    from typing import Annotated, Literal

    import srframe
    from srframe.interfaces import Loss
    from srframe.schema import Range

    class Typed(Loss):
        '''A loss with one parameter of each kind a schema checks.'''
        def __init__(self, mode: Literal["vanilla", "lsgan"] = "vanilla", layers: tuple[str, ...] = ("relu5_4",),
                     weights_file: Path | None = None, size: Annotated[int, Range(min=1)] = 1,
                     table: dict[str, float] | None = None, flag: bool = False, ratio: float | str = 0.5):
            super().__init__()
            self.settings = dict(mode=mode, layers=layers, weights_file=weights_file, size=size,
                                 table=table, flag=flag, ratio=ratio)

    class Adversarial(Loss):
        needs_discriminator = True

    @srframe.hookimpl
    def srframe_register(registry):
        registry.add("loss", "typed", Typed)
        registry.add("loss", "adv", Adversarial)
"""

BASE = """
    plugins = ["typed_losses"]
    scale = 4
    [generator]
    kind = "srresnet"
    num_blocks = 2
    [[stages]]
    name = "pixel"
    steps = 10
    losses = [{ kind = "mse" }]
"""


@pytest.fixture
def load(host, installed, write):
    """Load a recipe written in a temp folder, with the ``typed`` and ``adv`` test losses available."""
    installed("typed-losses", {"typed_losses": TYPED}, {})

    def load_text(text: str, overrides=None, name: str = "recipe.toml"):
        return load_recipe(write(name, text), overrides, host=host)

    return load_text


def problems(load, text: str) -> dict[str, str]:
    """Key path -> message of every problem found in ``text``."""
    with pytest.raises(RecipeError) as excinfo:
        load(text)
    return {p.path: p.message for p in excinfo.value.problems}


def test_valid_recipe_builds_a_typed_spec(load, host):
    spec = load(BASE).spec
    assert spec.name == "recipe" and spec.scale == 4
    assert spec.generator.params["scale"] == 4  # the recipe's scale reaches components that take one
    assert spec.generator.params["num_blocks"] == 2 and spec.generator.params["channels"] == 64
    assert spec.stages[0].losses[0].options.weight == 1.0
    assert spec.stages[0].optimizer.name == "adam"
    generator = spec.generator.build(host.registry)
    assert type(generator).__name__ == "SRResNet" and len(generator.body) == 2 + 2  # blocks + conv + BN


def test_recipe_plugins_are_loaded_and_recorded(load, host):
    spec = load(BASE.replace('[{ kind = "mse" }]', '[{ kind = "typed" }]')).spec
    assert spec.plugins == ["typed_losses"]
    assert host.plugins["typed_losses"].components == [("loss", "adv"), ("loss", "typed")]


def test_unknown_key_suggests_and_lists_known_keys(load):
    found = problems(load, "sede = 1\n" + BASE)
    assert 'did you mean "seed"' in found["sede"]
    found = problems(load, BASE.replace("num_blocks = 2", "num_block = 2"))
    assert 'unknown key for generator "srresnet"; did you mean "num_blocks"?' in found["generator.num_block"]
    assert "Known keys: scale, num_blocks, channels" in found["generator.num_block"]


def test_problem_names_the_recipe_file(load, tmp_path):
    with pytest.raises(RecipeError) as excinfo:
        load(BASE.replace("steps = 10", "steps = 10\nstep = 3"))
    (problem,) = excinfo.value.problems
    assert Path(problem.source) == tmp_path / "recipe.toml"
    assert problem.path == "stages[0].step"
    assert str(tmp_path / "recipe.toml") in str(excinfo.value) or "recipe.toml: stages[0].step" in str(excinfo.value)


def test_missing_required_keys(load):
    found = problems(load, BASE.replace("steps = 10\n", ""))
    assert found["stages[0].steps"] == "missing required key for a stage: expected an integer"
    found = problems(load, BASE.replace('kind = "srresnet"\n', ""))
    assert "missing required key: the generator to use (compact, rrdbnet, span, spandrel, srresnet, swinir)" in \
        found["generator.kind"]
    found = problems(load, "scale = 4\n")
    assert {"generator", "stages"} <= set(found)


@pytest.mark.parametrize("line, path, expected", [
    ('seed = "zero"', "seed", '"zero" is a string: expected an integer'),
    ("seed = 1.5", "seed", "1.5 is a number: expected an integer"),
    ("seed = true", "seed", "true is a boolean: expected an integer"),
    ('name = 3', "name", "3 is an integer: expected a string"),
    ('output_dir = ["a"]', "output_dir", '["a"] is an array: expected a path'),
    ('stages = { name = "x" }', "stages", "is a table: expected an array of a table"),
])
def test_wrong_top_level_types(load, line, path, expected):
    recipe = BASE.split("[[stages]]")[0] if line.startswith("stages") else BASE
    found = problems(load, line + "\n" + recipe)
    assert expected in found[path]


@pytest.mark.parametrize("loss, path, expected", [
    ('{ kind = "mse", weight = "heavy" }', "weight", '"heavy" is a string: expected a number'),
    ('{ kind = "typed", mode = "wgan" }', "mode", 'expected one of "vanilla", "lsgan"'),
    ('{ kind = "typed", mode = "lsgn" }', "mode", 'did you mean "lsgan"?'),
    ('{ kind = "typed", layers = "relu5_4" }', "layers", "expected an array of a string"),
    ('{ kind = "typed", layers = ["relu5_4", 2] }', "layers[1]", "2 is an integer: expected a string"),
    ('{ kind = "typed", size = 0 }', "size", "0 is out of range: expected an integer >= 1"),
    ('{ kind = "typed", table = 3 }', "table", "3 is an integer: expected a table"),
    ('{ kind = "typed", table = { a = "b" } }', "table.a", '"b" is a string: expected a number'),
    ('{ kind = "typed", flag = 1 }', "flag", "1 is an integer: expected true or false"),
    ('{ kind = "typed", ratio = [] }', "ratio", "[] is an array: expected a number or a string"),
    ('{ kind = "charbonnier", eps = [1] }', "eps", "[1] is an array: expected a number"),
    ('"mse"', "", 'is not a table: expected { kind = "<loss name>", ... }'),
    ('{ kind = "msee" }', "kind", 'unknown loss "msee"; did you mean "mse"?'),
])
def test_wrong_component_parameters_have_key_paths(load, loss, path, expected):
    found = problems(load, BASE.replace('losses = [{ kind = "mse" }]', f'losses = [{{ kind = "mse" }}, {loss}]'))
    key = f"stages[0].losses[1].{path}".rstrip(".")
    assert key in found, found
    assert expected in found[key]


def test_values_are_converted(load, tmp_path):
    spec = load(BASE.replace('losses = [{ kind = "mse" }]',
                             'losses = [{ kind = "typed", weight = 2, layers = ["relu2_2"], '
                             'weights_file = "vgg.safetensors", ratio = 1 }]')).spec
    loss = spec.stages[0].losses[0]
    assert loss.options.weight == 2.0 and isinstance(loss.options.weight, float)
    assert loss.params["layers"] == ("relu2_2",)
    assert loss.params["weights_file"] == tmp_path / "vgg.safetensors"
    assert loss.params["ratio"] == 1.0 and isinstance(loss.params["ratio"], float)


def test_unknown_component_name_suggests(load):
    found = problems(load, BASE.replace('kind = "srresnet"', 'kind = "srresnt"'))
    assert 'unknown generator "srresnt"; did you mean "srresnet"?' in found["generator.kind"]
    assert "Registered generators: compact, rrdbnet, span, spandrel, srresnet, swinir." in found["generator.kind"]


def test_component_scale_must_agree_with_the_recipe(load):
    found = problems(load, BASE.replace("num_blocks = 2", "num_blocks = 2\nscale = 2"))
    assert "disagrees with the recipe's scale = 4" in found["generator.scale"]


def test_optimizer_name_and_parameters_are_checked(load):
    found = problems(load, BASE.replace("steps = 10", 'steps = 10\noptimizer = { kind = "adamm", lr = 1e-4 }'))
    assert 'unknown optimizer "adamm"; did you mean "adam"' in found["stages[0].optimizer.kind"]
    found = problems(load, BASE.replace("steps = 10", 'steps = 10\noptimizer = { kind = "adam", betass = [0.9, 0.99] }'))
    assert 'did you mean "betas"' in found["stages[0].optimizer.betass"]
    spec = load(BASE.replace("steps = 10", 'steps = 10\noptimizer = { kind = "adamw", lr = 1, weight_decay = 0 }')).spec
    assert spec.stages[0].optimizer.params == {"lr": 1.0, "weight_decay": 0.0}


def test_stage_rules(load):
    found = problems(load, BASE.replace("steps = 10", "steps = 0"))
    assert "out of range" in found["stages[0].steps"]
    found = problems(load, BASE.replace('[{ kind = "mse" }]', '[{ kind = "adv" }]'))
    assert 'loss "adv" needs a discriminator: add discriminator = ' in found["stages[0].losses[0]"]
    found = problems(load, BASE.replace('[{ kind = "mse" }]', "[]"))
    assert "is empty: a stage needs at least one loss" in found["stages[0].losses"]
    found = problems(load, BASE + '[[stages]]\nname = "pixel"\nsteps = 1\nlosses = [{ kind = "l1" }]\n')
    assert '"pixel" is the name of stages[0] too' in found["stages[1].name"]


def test_all_problems_are_reported_at_once(load):
    found = problems(load, BASE.replace("num_blocks = 2", "num_blocks = 2.5").replace("steps = 10", 'steps = "ten"'))
    assert set(found) == {"generator.num_blocks", "stages[0].steps"}


def test_plugins_must_load(load):
    with pytest.raises(RecipeError) as excinfo:
        load(BASE.replace('["typed_losses"]', '["typed_losses", "no_such_lab"]'))
    (problem,) = excinfo.value.problems
    assert problem.path == "plugins[1]" and "no_such_lab" in problem.message
