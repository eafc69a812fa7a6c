"""The shape of a recipe, as typed dataclasses the checker validates against.

Sections that choose a component (``[generator]``, each loss, a discriminator) are tables
with ``kind = "<registered name>"``; their other keys are checked against that component's
schema. Keys the recipe itself reads (a loss's ``weight``) come from an options dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any

from ..errors import RegistryError
from ..schema import INVALID, Checker, KeyPath, Range, Schema, close_matches, describe, schema_of, show

if TYPE_CHECKING:
    from ..registry import Entry, Registry


@dataclass(frozen=True)
class ComponentSpec:
    """A component a recipe chose: its kind, registered name, checked parameters and recipe options."""

    kind: str
    name: str
    params: dict[str, Any]
    options: Any = None
    entry: Entry | None = field(default=None, repr=False, compare=False)

    def build(self, registry: Registry) -> Any:
        """Build the component (parameters were checked when the recipe was loaded)."""
        entry = self.entry or registry.get(self.kind, self.name)
        return registry.instantiate(entry, self.params)


class RecipeChecker(Checker):
    """A checker that knows the registry and the values a recipe gives every component (``scale``)."""

    def __init__(self, registry: Registry, context: Mapping[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.registry = registry
        self.context = dict(context)


@dataclass(frozen=True)
class Component:
    """Marks a recipe table that chooses a registered component: ``Annotated[ComponentSpec, Component("loss")]``."""

    kind: str
    options: type | None = None  # a dataclass of keys the recipe reads itself, e.g. LossOptions
    given: tuple[tuple[str, Any], ...] = ()  # parameter values this section sets, e.g. (("mode", "val"),)

    def convert(self, value: Any, path: KeyPath, checker: RecipeChecker) -> Any:
        registry = checker.registry
        name = _chosen_name(value, path, checker, self.kind, registry.names(self.kind),
                            lambda unknown: registry.unknown_name_message(self.kind, unknown))
        if name is INVALID:
            return INVALID
        entry = registry.get(self.kind, name)
        try:
            schema = entry.schema
        except RegistryError as exc:
            return checker.problem(path, str(exc))
        options = schema_of(self.options).fields if self.options else {}
        combined = Schema({**schema.fields, **options}, schema.open)
        table = {k: v for k, v in value.items() if k != "kind"}
        provided = {k: v for k, v in (*checker.context.items(), *self.given) if k in schema.fields}
        for key, expected in provided.items():
            if key in table and table[key] != expected:
                return checker.problem(path + (key,), f"{show(table[key])} disagrees with the recipe's "
                                       f"{key} = {show(expected)}: leave it out or make them equal")
        checked = checker.check_table(table, combined, path, f'{self.kind} "{entry.name}"', provided)
        if checked is INVALID:
            return INVALID
        params = {k: v for k, v in checked.items() if k not in options}
        for f in schema.fields.values():  # show every default in the resolved recipe
            if f.name not in params and _is_toml_value(f.default):
                params[f.name] = f.default
        chosen_options = self.options(**{k: v for k, v in checked.items() if k in options}) if self.options else None
        return ComponentSpec(self.kind, entry.name, params, chosen_options, entry)


@dataclass(frozen=True)
class Optimizer:
    """Marks a table that chooses a torch/timm optimiser by name: ``{ kind = "adam", lr = 1e-4 }``.

    A table without ``kind`` uses ``default`` (so ``--set stages[0].optimizer.lr=1e-3`` just works).
    """

    default: str = "adam"

    def convert(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        import timm.optim

        if isinstance(value, Mapping) and "kind" not in value:
            value = {"kind": self.default, **value}
        names = timm.optim.list_optimizers()
        name = _chosen_name(value, path, checker, "optimizer", names)
        if name is INVALID:
            return INVALID
        schema = schema_of(timm.optim.get_optimizer_class(name, bind_defaults=False))
        fields = {k: f for k, f in schema.fields.items() if k != "params"}
        params = checker.check_table({k: v for k, v in value.items() if k != "kind"},
                                     Schema(fields, schema.open), path, f'optimizer "{name}"')
        return INVALID if params is INVALID else ComponentSpec("optimizer", name, params)


@dataclass(frozen=True)
class LossOptions:
    """Keys of a loss table that the training engine reads itself."""

    weight: float = 1.0


def _default_optimizer() -> ComponentSpec:
    return ComponentSpec("optimizer", "adam", {"lr": 1e-4})


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One training stage: which losses, how long, with which optimiser, from which weights."""

    name: str
    steps: Annotated[int, Range(min=1)]
    init_generator: Path | None = None  # a run directory or checkpoint to start the generator from
    optimizer: Annotated[ComponentSpec, Optimizer()] = field(default_factory=_default_optimizer)
    losses: list[Annotated[ComponentSpec, Component("loss", LossOptions)]]
    discriminator: Annotated[ComponentSpec, Component("discriminator")] | None = None

    def __post_init__(self) -> None:
        if not self.losses:
            raise ValueError(f'stage "{self.name}" has no losses: add at least one, e.g. '
                             'losses = [{ kind = "mse" }]')
        if self.discriminator is None:
            for i, loss in enumerate(self.losses):
                if loss.entry is not None and getattr(loss.entry.factory, "needs_discriminator", False):
                    raise ValueError(f'losses[{i}] ("{loss.name}") needs a discriminator: add '
                                     'discriminator = { kind = "..." } to this stage')


@dataclass(frozen=True)
class LoaderOptions:
    """Keys of ``[data.train]`` that the loader reads (the rest go to the dataset)."""

    batch_size: Annotated[int, Range(min=1)] = 16
    num_workers: Annotated[int, Range(min=0)] = 2  # worker processes decoding and cropping
    pin_memory: bool = True  # used when training on CUDA


@dataclass(frozen=True)
class ValLoaderOptions:
    """Keys of ``[data.val]`` that the loader reads; validation goes one whole image at a time."""

    num_workers: Annotated[int, Range(min=0)] = 0
    pin_memory: bool = True


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """``[data.train]``: the training patches; ``[data.val]``: whole images to validate on (optional)."""

    train: Annotated[ComponentSpec, Component("dataset", LoaderOptions, given=(("mode", "train"),))]
    val: Annotated[ComponentSpec, Component("dataset", ValLoaderOptions, given=(("mode", "val"),))] | None = None


@dataclass(frozen=True, kw_only=True)
class RecipeSpec:
    """A whole recipe, checked."""

    name: str = ""  # defaults to the recipe file's name
    seed: int = 0
    scale: Annotated[int, Range(min=1)]
    plugins: list[str] = field(default_factory=list)  # extra plugin modules (dotted names or .py files)
    output_dir: Path = Path("runs")  # where run directories are made
    generator: Annotated[ComponentSpec, Component("generator")]
    degradation: Annotated[ComponentSpec, Component("degradation")] | None = None  # None: bicubic at the scale
    data: DataSpec | None = None
    stages: list[StageSpec]

    def __post_init__(self) -> None:
        if self.degradation is None:  # frozen, so set the default the way dataclasses do
            object.__setattr__(self, "degradation", ComponentSpec("degradation", "bicubic", {"scale": self.scale}))
        if not self.stages:
            raise ValueError('a recipe needs at least one [[stages]] table')
        names = [stage.name for stage in self.stages]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(repeated)}")


def to_toml_data(value: Any) -> Any:
    """A checked recipe (or part of one) as plain TOML data; None values are left out."""
    if isinstance(value, ComponentSpec):
        options = to_toml_data(value.options) if value.options is not None else {}
        return {"kind": value.name, **to_toml_data(value.params), **options}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_toml_data(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, Mapping):
        return {k: to_toml_data(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_toml_data(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def _is_toml_value(value: Any) -> bool:
    """Whether a default can be written to the resolved recipe (None and objects such as paths cannot)."""
    if isinstance(value, (bool, int, float, str)):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(_is_toml_value(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_toml_value(v) for k, v in value.items())
    return isinstance(value, (list, tuple)) and all(_is_toml_value(v) for v in value)


def _chosen_name(value: Any, path: KeyPath, checker: Checker, what: str, names: list[str],
                 unknown: Callable[[str], str] | None = None) -> Any:
    """The ``kind`` of table ``value`` if it names one of ``names``; INVALID (with a problem) otherwise."""
    if not isinstance(value, Mapping):
        return checker.problem(path, f'{show(value)} is not a table: expected {{ kind = "<{what} name>", ... }}')
    if "kind" not in value:
        listed = ", ".join(names) if len(names) <= 20 else f"{len(names)} registered names"
        return checker.problem(path + ("kind",), f"missing required key: the {what} to use ({listed})")
    name = value["kind"]
    if not isinstance(name, str):
        return checker.problem(path + ("kind",), f"{show(name)}: expected {describe(str)}")
    if name not in names:
        message = unknown(name) if unknown else f'unknown {what} "{name}"{close_matches(name, names)}'
        return checker.problem(path + ("kind",), message)
    return name
