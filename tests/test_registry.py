"""The registry: adding, looking up, building, and the errors a user sees."""

from __future__ import annotations

import pytest

import srframe
from srframe.errors import RecipeError, RegistryError
from srframe.registry import Registry


class Scaled:
    """A stand-in component."""

    def __init__(self, factor: float = 1.0, mode: str = "a"):
        self.factor, self.mode = factor, mode


def test_register_and_build_with_checked_params(registry: Registry):
    registry.register("metric", "scaled")(Scaled)
    built = registry.build("metric", "scaled", {"factor": 2})
    assert isinstance(built, Scaled) and built.factor == 2.0 and isinstance(built.factor, float)


def test_origin_records_module(registry: Registry):
    entry = registry.add("metric", "scaled", Scaled)
    assert entry.origin.module == __name__ and entry.origin.package is None
    assert entry.summary == "A stand-in component."


def test_duplicate_name_names_both_origins(registry: Registry):
    registry.add("metric", "scaled", Scaled)

    def other():
        return Scaled()

    with pytest.raises(RegistryError) as excinfo:
        registry.add("metric", "scaled", other, module="my_lab.metrics")
    message = str(excinfo.value)
    assert 'metric "scaled" is registered twice' in message
    assert __name__ in message and "my_lab.metrics" in message


def test_registering_the_same_factory_again_is_harmless(registry: Registry):
    first = registry.add("metric", "scaled", Scaled)
    assert registry.add("metric", "scaled", Scaled) is first


def test_unknown_name_suggests_close_matches_and_lists_names(registry: Registry):
    registry.add("metric", "psnr_y", Scaled)
    registry.add("metric", "ssim_y", Scaled)
    with pytest.raises(RegistryError) as excinfo:
        registry.get("metric", "psnr")
    message = str(excinfo.value)
    assert 'unknown metric "psnr"' in message
    assert 'did you mean "psnr_y"' in message
    assert "Registered metrics: psnr_y, ssim_y." in message


def test_unknown_kind_is_an_error_with_suggestion(registry: Registry):
    with pytest.raises(RegistryError, match='unknown component kind "generater"; did you mean "generator"'):
        registry.register("generater", "x")


def test_build_reports_every_bad_parameter(registry: Registry):
    registry.add("metric", "scaled", Scaled)
    with pytest.raises(RecipeError) as excinfo:
        registry.build("metric", "scaled", {"factr": 2.0, "mode": 3}, source="test")
    paths = {p.path for p in excinfo.value.problems}
    assert paths == {"factr", "mode"}
    assert 'did you mean "factor"' in str(excinfo.value)


def test_build_checks_the_interface_of_the_result(registry: Registry):
    registry.add("loss", "not_a_loss", Scaled)
    with pytest.raises(RegistryError, match='built a Scaled, not a srframe.Loss'):
        registry.build("loss", "not_a_loss")


def test_public_build_uses_the_default_registry():
    loss = srframe.build("loss", "charbonnier", eps=1e-2)
    assert isinstance(loss, srframe.Loss) and loss.eps == 1e-2
    with pytest.raises(RecipeError, match=r"srframe.build\('loss', 'charbonnier'\): eps"):
        srframe.build("loss", "charbonnier", eps="small")


def test_lookup_loads_installed_plugins_once(registry: Registry):
    assert "srresnet" in registry.names("generator")
    assert {"mse", "l1", "charbonnier"} <= set(registry.names("loss"))
    assert registry.get("generator", "srresnet").origin.package.startswith("srframe ")
