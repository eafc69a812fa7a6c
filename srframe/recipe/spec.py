"""The shape of a recipe, as typed dataclasses the checker validates against.

Sections that choose a component (``[generator]``, each loss, a discriminator) are tables
with ``kind = "<registered name>"``; their other keys are checked against that component's
schema and its own ``check_params`` rules. Keys the recipe itself reads (a loss's ``weight``)
come from an options dataclass (:mod:`srframe.recipe.options`). Rules across fields
(``check_fields``) run even when other keys are wrong, so one check reports every problem.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from ..errors import CheckpointError, RegistryError
from ..schema import INVALID, Checker, KeyPath, Range, Schema, close_matches, describe, schema_of, show
from .options import LoaderOptions, LossOptions, ValLoaderOptions

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
        if not checker.check_params(entry.factory, params, path, f'{self.kind} "{entry.name}" ({entry.origin})'):
            return INVALID
        for f in schema.fields.values():  # show every default in the resolved recipe
            if f.name not in params and _is_toml_value(f.default):
                params[f.name] = f.default
        chosen_options = self.options(**{k: v for k, v in checked.items() if k in options}) if self.options else None
        return ComponentSpec(self.kind, entry.name, params, chosen_options, entry)

    def json_schema(self, schema: dict[str, Any], builder: Any, partial: bool) -> dict[str, Any]:
        from .json_schema import component_table

        return component_table(builder, self.kind, self.options, dict(self.given), partial)


@dataclass(frozen=True)
class Optimizer:
    """Marks a table that chooses a torch/timm optimiser by name: ``{ kind = "adam", lr = 1e-4 }``.

    A table without ``kind`` uses ``default`` (so ``--set stages[0].optimizer.lr=1e-3`` just works).
    The parameters are checked against the optimiser's signature, then by constructing it over
    one dummy tensor, so a value the optimiser refuses (``lr = -1``) is a check-time problem.
    """

    default: str = "adam"

    def convert(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        from ..train import optimizers

        if isinstance(value, Mapping) and "kind" not in value:
            value = {"kind": self.default, **value}
        kind = value.get("kind") if isinstance(value, Mapping) else None
        try:
            known = isinstance(kind, str) and optimizers.find(kind) is not None
        except ValueError as exc:
            return checker.problem(path + ("kind",), str(exc))
        name = kind if known else _chosen_name(value, path, checker, "optimizer", optimizers.names())
        if name is INVALID:
            return INVALID
        info = optimizers.find(name)
        schema = schema_of(info.cls)
        fields = {k: dataclasses.replace(f, annotation=without_tensor(f.annotation))
                  for k, f in schema.fields.items() if k != "params"}
        params = checker.check_table({k: v for k, v in value.items() if k != "kind"},
                                     Schema(fields, schema.open), path, f'optimizer "{name}"')
        if params is INVALID:
            return INVALID
        refused = optimizers.refusals(info, params)
        for key, message in refused:
            checker.problem(path + ((key,) if key else ()), message)
        return INVALID if refused else ComponentSpec("optimizer", name, params)

    def json_schema(self, schema: dict[str, Any], builder: Any, partial: bool) -> dict[str, Any]:
        from .json_schema import optimizer_table

        return optimizer_table(builder, self.default, partial)


@dataclass(frozen=True)
class Scheduler:
    """Marks a table that chooses a learning-rate schedule by name (:mod:`srframe.train.schedules`)."""

    def convert(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        from ..train import schedules

        name = _chosen_name(value, path, checker, "scheduler", list(schedules.SCHEDULES))
        if name is INVALID:
            return INVALID
        params = checker.check_table({k: v for k, v in value.items() if k != "kind"}, schedules.schema(name), path,
                                     f'scheduler "{name}"')
        if params is INVALID:
            return INVALID
        for key, message in schedules.refusals(name, params, None):
            return checker.problem(path + (key,), message)
        return ComponentSpec("scheduler", name, params)

    def json_schema(self, schema: dict[str, Any], builder: Any, partial: bool) -> dict[str, Any]:
        from .json_schema import scheduler_table

        return scheduler_table(builder, partial)


def without_tensor(annotation: Any) -> Any:
    """``float | Tensor`` -> ``float``: a recipe writes numbers (torch's optimisers also take tensors)."""
    args, origin = typing.get_args(annotation), typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kept = [without_tensor(a) for a in args if getattr(a, "__name__", "") != "Tensor"]
        return kept[0] if len(kept) == 1 else typing.Union[tuple(kept)]
    if origin is tuple and args:  # betas: tuple[float | Tensor, float | Tensor]
        return tuple[tuple(without_tensor(a) for a in args)]
    return annotation


@dataclass(frozen=True)
class GeneratorSource:
    """Marks a path that must hold a generator: a run directory, a checkpoint folder or a component file."""

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        from ..component_files import generator_built_from

        try:
            built = generator_built_from(value)
        except CheckpointError as exc:
            if Path(value).is_file():  # the file is there and is what is wrong
                return checker.problem(path, str(exc))
            return checker.problem(path, f"{exc}. Train that run first (`srframe run` on its recipe), or point "
                                         "init_generator at a run directory, a generator .safetensors file or a "
                                         "community checkpoint (.pth, .safetensors)")
        if built.kind != "generator":
            return checker.problem(path, f"{value} holds a {built.kind} ({built.name}), not a generator")
        return value


def _starts_mismatch(generator: ComponentSpec, source: Path) -> str | None:
    """Why the generator saved at ``source`` cannot start this recipe's generator (None: it can)."""
    from ..component_files import generator_built_from

    built = generator_built_from(source)
    if built.name != generator.name:
        return f'{source} holds a "{built.name}" generator, and this recipe trains "{generator.name}"'
    # a factory may say which parameters are the same model (spandrel's hyper-parameters, defaults left out)
    normalize = getattr(getattr(generator.entry, "factory", None), "normalize_params", None) or dict
    there, here = normalize(dict(built.params)), normalize(to_toml_data(dict(generator.params)))
    differing = [f"{key} = {show(there[key])} there, {show(here[key])} here"
                 for key in sorted(there.keys() & here.keys()) if there[key] != here[key]
                 and not (isinstance(there[key], dict) and isinstance(here[key], dict))]
    differing += [f"{key}.{inner} = {show(there[key].get(inner, '(default)'))} there, "
                  f"{show(here[key].get(inner, '(default)'))} here"
                  for key in sorted(there.keys() & here.keys())
                  if isinstance(there[key], dict) and isinstance(here[key], dict)
                  for inner in sorted(there[key].keys() | here[key].keys())
                  if there[key].get(inner) != here[key].get(inner)]
    if differing:
        return f"{source} holds a {built.name} generator built differently: {'; '.join(differing)}"
    return None


@dataclass(frozen=True)
class Device:
    """A torch device a run can train on: "auto", "cpu", "cuda" or "cuda:N"."""

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
            return value
        return checker.problem(path, f'{show(value)} is not a device srframe trains on: expected "auto", "cpu", '
                                     f'"cuda" or "cuda:N"{close_matches(value, ["auto", "cpu", "cuda"])}')

    def json_schema(self, schema: dict[str, Any], builder: Any, partial: bool) -> dict[str, Any]:
        return {**schema, "pattern": r"^(auto|cpu|cuda(:[0-9]+)?)$"}


@dataclass(frozen=True)
class StageName:
    """A stage's name names folders of the run directory: letters, digits, ``_``, ``-`` and ``.``."""

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value) or value in (".", ".."):
            return checker.problem(path, f"{show(value)} cannot name the stage's folder: use letters, digits, "
                                         '"_", "-" and "." (e.g. "gan_finetune")')
        return value

    def json_schema(self, schema: dict[str, Any], builder: Any, partial: bool) -> dict[str, Any]:
        return {**schema, "pattern": r"^[A-Za-z0-9_.-]+$", "not": {"enum": [".", ".."]}}


def _default_optimizer() -> ComponentSpec:
    return ComponentSpec("optimizer", "adam", {"lr": 1e-4})


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One training stage: which losses, how long, with which optimisers, from which weights.

    With a ``discriminator`` the stage is adversarial: each step updates the discriminator on the
    objective of the stage's adversarial losses, and the generator every ``generator_every`` steps
    once ``discriminator_warmup`` steps have passed (BasicSR's ``net_d_iters``/``net_d_init_iters``).
    """

    table_name: ClassVar[str] = "a stage"

    name: Annotated[str, StageName()]  # names the stage's folder and result, e.g. "gan"
    steps: Annotated[int, Range(min=1)]  # optimiser steps of the stage
    init_generator: Annotated[Path, GeneratorSource()] | None = None  # start from a run directory or generator file
    optimizer: Annotated[ComponentSpec, Optimizer()] = field(
        default_factory=_default_optimizer)  # the generator's; default: adam, lr 1e-4
    scheduler: Annotated[ComponentSpec, Scheduler()] | None = None  # learning rate over the stage; default: constant
    losses: list[Annotated[ComponentSpec, Component("loss", LossOptions)]]  # the generator's weighted losses
    discriminator: Annotated[ComponentSpec, Component("discriminator")] | None = None  # makes the stage adversarial
    # Adversarial stages only: None elsewhere, and the defaults below in a stage with a discriminator.
    discriminator_optimizer: Annotated[ComponentSpec, Optimizer()] | None = None  # default: adam, lr 1e-4
    generator_every: Annotated[int, Range(min=1)] | None = None  # update G every N steps (D: every step); default 1
    discriminator_warmup: Annotated[int, Range(min=0)] | None = None  # steps at the start training only D; default 0

    def __post_init__(self) -> None:
        if self.discriminator is not None:  # frozen, so set the defaults the way dataclasses do
            for key, default in (("discriminator_optimizer", _default_optimizer()), ("generator_every", 1),
                                 ("discriminator_warmup", 0)):
                if getattr(self, key) is None:
                    object.__setattr__(self, key, default)

    @staticmethod
    def check_fields(values: dict[str, Any], table: Mapping[str, Any]) -> list[tuple[Any, str]]:
        """Rules across a stage's keys, on whatever of them passed their own checks."""
        problems: list[tuple[Any, str]] = []
        losses = values.get("losses", INVALID)
        if isinstance(losses, list) and not losses:
            problems.append(("losses", 'is empty: a stage needs at least one loss, e.g. losses = [{ kind = "mse" }]'))
        chosen = [(i, loss) for i, loss in enumerate(losses) if isinstance(loss, ComponentSpec)] \
            if isinstance(losses, list) else []
        has_discriminator = "discriminator" in values
        if not has_discriminator:
            for i, loss in chosen:
                if _declares(loss, "needs_discriminator"):
                    problems.append((("losses", i), f'loss "{loss.name}" needs a discriminator: add '
                                                    'discriminator = { kind = "srgan" } (or another) to this stage'))
            for key in ("discriminator_optimizer", "generator_every", "discriminator_warmup"):
                if key in values:
                    problems.append((key, "applies to a stage with a discriminator, and this stage has none"))
        elif isinstance(losses, list) and len(chosen) == len(losses) \
                and all(_declares(loss, "discriminator_loss") is False for _, loss in chosen):
            problems.append(("discriminator", "nothing in this stage trains the discriminator: add an adversarial "
                                              'loss, e.g. { kind = "adversarial", weight = 1e-3 } (a loss registered '
                                              "by a function needs a return annotation naming its class)"))
        steps = values.get("steps")
        warmup = values.get("discriminator_warmup")
        if isinstance(steps, int) and isinstance(warmup, int) and warmup >= steps:
            problems.append(("discriminator_warmup", f"{warmup} is not below the stage's steps = {steps}: the "
                                                     "generator would never be trained"))
        scheduler = values.get("scheduler")
        if isinstance(steps, int) and isinstance(scheduler, ComponentSpec):
            from ..train import schedules

            problems.extend((("scheduler", key), message)
                            for key, message in schedules.refusals(scheduler.name, scheduler.params, steps))
        return problems


def _declares(spec: ComponentSpec, attribute: str) -> bool | None:
    """Whether a component's class declares ``attribute`` (needs_discriminator, discriminator_loss);
    None when the factory's class cannot be told (a function without a return annotation)."""
    made = spec.entry.component_class if spec.entry is not None else None
    return None if made is None else bool(getattr(made, attribute, False))


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """``[train]``: how the engine runs every stage (devices, precision, EMA, intervals)."""

    table_name: ClassVar[str] = "[train]"

    device: Annotated[str, Device()] = "auto"  # "auto" (the GPU under torchrun or when there is one), "cpu", "cuda:1"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype; fp16 adds a gradient scaler
    ema_decay: Annotated[float, Range(min=0, below=1)] = 0.0  # generator EMA (timm ModelEmaV3); 0 is off
    grad_clip: Annotated[float, Range(min=0)] = 0.0  # largest gradient norm per optimiser; 0 is off
    accumulate: Annotated[int, Range(min=1)] = 1  # batches per optimiser step (gradient accumulation)
    channels_last: bool = False  # NHWC memory layout for the generator and discriminator
    compile: bool = False  # torch.compile the generator and discriminator
    ops: Literal["auto", "fused", "reference"] = "auto"  # srframe.ops mode: Triton kernels on CUDA, or torch
    sync_batchnorm: bool = False  # under torchrun: batch norm statistics over all processes (CUDA)
    log_every: Annotated[int, Range(min=1)] = 100  # steps between metrics.jsonl lines and progress lines
    val_every: Annotated[int, Range(min=0)] = 1000  # steps between validations; 0: at the end of each stage
    checkpoint_every: Annotated[int, Range(min=1)] = 1000  # steps between checkpoints (and at each stage's end)
    keep_checkpoints: Annotated[int, Range(min=1)] = 3  # newest checkpoints kept, besides each stage's best
    best_metric: Literal["psnr_y", "ssim_y", "lpips"] = "psnr_y"  # which validation metric picks the best
    lpips: bool = False  # also validate LPIPS-VGG (needs VGG16 and LPIPS weights)
    tensorboard: bool = False  # also log to TensorBoard (needs the tensorboard package)

    @staticmethod
    def check_fields(values: dict[str, Any], table: Mapping[str, Any]) -> list[tuple[Any, str]]:
        if values.get("best_metric") == "lpips" and values.get("lpips") is not True:
            return [("best_metric", '"lpips" needs LPIPS at each validation: set lpips = true too')]
        return []


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """``[data.train]``: the training patches; ``[data.val]``: whole images to validate on (optional)."""

    table_name: ClassVar[str] = "[data]"

    train: Annotated[ComponentSpec, Component("dataset", LoaderOptions, given=(("mode", "train"),))]  # HR patches
    val: Annotated[ComponentSpec, Component("dataset", ValLoaderOptions,
                                            given=(("mode", "val"),))] | None = None  # whole images


@dataclass(frozen=True, kw_only=True)
class RecipeSpec:
    """A whole recipe, checked."""

    table_name: ClassVar[str] = "the recipe"

    name: str = ""  # defaults to the recipe file's name
    seed: int = 0  # seeds every random number generator of the run
    scale: Annotated[int, Range(min=1)]  # the upscaling factor, given to every component that takes `scale`
    plugins: list[str] = field(default_factory=list)  # extra plugin modules (dotted names or .py files)
    output_dir: Path = Path("runs")  # where run directories are made
    generator: Annotated[ComponentSpec, Component("generator")]  # the model trained
    degradation: Annotated[ComponentSpec, Component("degradation")] | None = None  # HR -> LR; default: MATLAB bicubic
    data: DataSpec | None = None  # the images: [data.train] is needed to train, [data.val] optional
    train: TrainSpec = field(default_factory=TrainSpec)  # how the engine runs every stage
    stages: list[StageSpec]  # run in order, the generator carried from one to the next

    def __post_init__(self) -> None:
        if self.degradation is None:  # frozen, so set the default the way dataclasses do
            object.__setattr__(self, "degradation", ComponentSpec("degradation", "bicubic", {"scale": self.scale}))

    @staticmethod
    def check_fields(values: dict[str, Any], table: Mapping[str, Any]) -> list[tuple[Any, str]]:
        """Rules across the recipe's sections: at least one stage, unique stage names.

        Names are read from the tables as written, so a stage with other problems still takes part.
        """
        stages = table.get("stages")
        if not isinstance(stages, list):
            return []
        if not stages:
            return [("stages", "is empty: a recipe needs at least one [[stages]] table")]
        problems, first = [], {}
        for i, stage in enumerate(stages):
            name = stage.get("name") if isinstance(stage, Mapping) and isinstance(stage.get("name"), str) else None
            if name in first:
                problems.append((("stages", i, "name"), f'"{name}" is the name of stages[{first[name]}] too: '
                                                        "stage names must be unique (they name each stage's result)"))
            elif name is not None:
                first[name] = i
        generator, checked = values.get("generator"), values.get("stages")
        if isinstance(generator, ComponentSpec) and isinstance(checked, list):
            for i, stage in enumerate(checked):
                if isinstance(stage, StageSpec) and stage.init_generator is not None:
                    mismatch = _starts_mismatch(generator, stage.init_generator)
                    if mismatch:
                        problems.append((("stages", i, "init_generator"), mismatch))
        return problems


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
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _is_toml_value(value: Any) -> bool:
    """Whether a default can be written to the resolved recipe (None and objects such as paths cannot)."""
    if isinstance(value, (bool, int, float, str, enum.Enum)):
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
