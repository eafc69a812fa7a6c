"""`srframe recipe schema`: a JSON Schema that editors validate recipes with, made from the registry."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

import srframe
from srframe.cli import main
from srframe.interfaces import Loss
from srframe.recipe.json_schema import recipe_schema

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "recipes").glob("*.toml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = recipe_schema(srframe.registry)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def problems(validator: jsonschema.Draft7Validator, recipe: dict) -> list[tuple[list, str]]:
    """Each error as an editor shows it: the most specific cause, its key path and message."""
    found = []
    for error in validator.iter_errors(recipe):
        best = jsonschema.exceptions.best_match([error])
        found.append((list(best.absolute_path), best.message))
    return found


def recipe(name: str = "srresnet_x4.toml") -> dict:
    return tomllib.loads((ROOT / "recipes" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(validator, path):
    assert problems(validator, tomllib.loads(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("where, key", [
    ((), "sed"),
    (("train",), "log_evry"),
    (("generator",), "num_block"),
    (("data", "train"), "patch_szie"),
    (("stages", 0), "stpes"),
    (("stages", 0, "losses", 0), "wieght"),
    (("stages", 0, "optimizer"), "lrr"),
])
def test_a_misspelt_key_is_refused_where_it_was_written(validator, where, key):
    document = recipe()
    table = document
    for part in where:
        table = table[part]
    table[key] = 1
    found = problems(validator, document)
    assert len(found) == 1, found
    path, message = found[0]
    assert path == list(where) and repr(key) in message


@pytest.mark.parametrize("change, where, words", [
    (lambda d: d["generator"].update(kind="srresnett"), ["generator", "kind"], "is not one of"),
    (lambda d: d["generator"].update(num_blocks=-1), ["generator", "num_blocks"], "less than the minimum of 0"),
    (lambda d: d["train"].update(precision="fp8"), ["train", "precision"], "is not one of"),
    (lambda d: d["stages"][0].update(steps="10"), ["stages", 0, "steps"], "is not of type 'integer'"),
    (lambda d: d["stages"][0]["losses"].append({"weight": 1.0}), ["stages", 0, "losses", 1], "'kind' is a required"),
    (lambda d: d.pop("scale"), [], "'scale' is a required property"),
    (lambda d: d["stages"][0].update(name="a/b"), ["stages", 0, "name"], "does not match"),
    (lambda d: d["train"].update(device="gpu"), ["train", "device"], "does not match"),
])
def test_wrong_values_are_refused(validator, change, where, words):
    document = recipe()
    change(document)
    found = problems(validator, document)
    assert [path for path, _ in found] == [where], found
    assert words in found[0][1]


def test_a_recipe_that_extends_another_may_leave_out_what_its_base_gives(validator):
    layer = recipe("srgan_x4.toml")
    assert "scale" not in layer and "generator" not in layer
    assert problems(validator, layer) == []
    layer["generator"] = {"num_blocks": 8}  # merged into the base's generator: its kind comes from there
    assert problems(validator, layer) == []
    layer["generator"] = {"num_blokcs": 8}  # a key no generator takes
    assert [path for path, _ in problems(validator, layer)] == [["generator"]]
    del layer["generator"]
    del layer["stages"][0]["steps"]  # arrays of tables replace the base's whole: a stage is complete
    assert [path for path, _ in problems(validator, layer)] == [["stages", 0]]


def test_an_optimizer_without_kind_is_adam(validator):
    document = recipe()
    document["stages"][0]["optimizer"] = {"lr": 1e-3, "betas": [0.9, 0.99]}
    assert problems(validator, document) == []
    document["stages"][0]["optimizer"] = {"lr": 1e-3, "momentum": 0.9}  # SGD's key, not Adam's
    assert [path for path, _ in problems(validator, document)] == [["stages", 0, "optimizer"]]


def test_the_schema_and_recipe_check_agree_on_defaults(validator):
    schema = validator.schema["definitions"]["recipe"]["properties"]
    assert schema["train"]["properties"]["log_every"]["default"] == 100
    assert "steps between" in schema["train"]["properties"]["log_every"]["description"]
    loss = validator.schema["definitions"]["loss charbonnier"]["properties"]
    assert loss["eps"] == {"type": "number", "exclusiveMinimum": 0, "default": 1e-3}
    assert loss["weight"]["default"] == 1.0


def test_components_of_plugins_are_in_the_schema(registry):
    class Gradient(Loss):
        """L1 between image gradients."""

        def __init__(self, order: int = 1):
            super().__init__()

    registry.add("loss", "gradient_l1", Gradient)
    schema = recipe_schema(registry)
    assert schema["definitions"]["loss gradient_l1"]["properties"]["order"]["type"] == "integer"
    document = recipe()
    document["stages"][0]["losses"] = [{"kind": "gradient_l1", "order": 2, "weight": 0.5}]
    assert problems(jsonschema.Draft7Validator(schema), document) == []
    document["stages"][0]["losses"][0]["ordr"] = 2
    assert len(problems(jsonschema.Draft7Validator(schema), document)) == 1


def test_the_command_writes_the_schema_and_replaces_only_its_own(tmp_path, capsys):
    target = tmp_path / "recipe.schema.json"
    assert main(["recipe", "schema", "-o", str(target)]) == 0
    written = json.loads(target.read_text())
    assert written["title"] == "srframe recipe" and "generator srresnet" in written["definitions"]
    assert main(["recipe", "schema", "-o", str(target)]) == 0  # its own file: replaced
    mine = tmp_path / "notes.json"
    mine.write_text('{"keep": true}')
    assert main(["recipe", "schema", "-o", str(mine)]) == 2
    assert mine.read_text() == '{"keep": true}'
    assert "is not a recipe schema srframe wrote" in capsys.readouterr().err
    assert main(["recipe", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == written

