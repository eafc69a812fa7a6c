"""A contract kit for plugin authors: check a registered component against srframe's interfaces.

Call it from your plugin's own test suite (pytest or anything else)::

    from srframe import testing

    def test_my_components():
        testing.check_generator("espcn")                     # defaults, or pass params={...}
        testing.check_loss("luma_charbonnier", params={"eps": 1e-6})

Each ``check_*`` builds the component through the registry, exactly as a recipe would, and runs
its interface on tiny tensors on the CPU: shapes, dtypes, value ranges, finite values,
gradients where they apply, determinism of a seeded degradation, and a save/load round trip for
generators and discriminators. It also checks the schema: closed (a misspelt key is refused),
and every default writes to TOML and reads back as itself, so ``srframe recipe show`` can record
it. A violation raises :class:`ContractError` (an ``AssertionError``, so test runners report it
as a failure) naming the component and what is wrong. Each check returns the built component.

The shape of spandrel's ``tests/util.py`` and of timm's tests over ``list_models()``:
``tests/test_contracts.py`` runs this kit over every component srframe registers.
"""

from __future__ import annotations

import math
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

import torch
from torch import nn

from .errors import RecipeError, SrframeError
from .interfaces import (AdversarialLoss, Degradation, Discriminator, DiscriminatorContext, Generator, Loss,
                         LossContext)
from .registry import Entry, Registry
from .schema import MISSING, Checker

__all__ = ["ContractError", "check_component", "check_dataset", "check_degradation", "check_discriminator",
           "check_generator", "check_loss"]

TYPO_KEY = "srframe_contract_typo"


class ContractError(SrframeError, AssertionError):
    """A component breaks the contract of its interface."""


def check_component(kind: str, name: str, params: Mapping[str, Any] | None = None, *,
                    registry: Registry | None = None) -> Any:
    """Run the check of ``kind`` (generator, discriminator, loss, degradation, dataset) on component ``name``."""
    checks: dict[str, Callable[..., Any]] = {
        "generator": check_generator, "discriminator": check_discriminator, "loss": check_loss,
        "degradation": check_degradation, "dataset": check_dataset,
    }
    if kind not in checks:
        raise ContractError(f"the contract kit has no check for kind {kind!r}; kinds: {', '.join(checks)}")
    return checks[kind](name, params, registry=registry)


def check_generator(name: str, params: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
                    scale: int = 4) -> Generator:
    """Check generator ``name``: (2, in, 12, 10) in [0, 1] -> (2, out, 12 s, 10 s) float32, finite;
    gradients reach every trainable parameter; eval mode is deterministic; save/load round trip.

    ``scale`` is given when the generator takes one and ``params`` does not set it.
    """
    registry, entry = _entry("generator", name, registry)
    generator = _build(registry, entry, _with_scale(entry, params, scale), Generator)
    where = _label(entry)
    for attribute in ("scale", "in_channels", "out_channels"):
        value = getattr(generator, attribute, None)
        _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{where}: `{attribute}` must be a positive int, got {value!r}")
    lr = torch.rand(2, generator.in_channels, 12, 10, generator=torch.Generator().manual_seed(0))
    generator.train()
    sr = _run(where, "forward(lr)", lambda: generator(lr))
    expected = (2, generator.out_channels, 12 * generator.scale, 10 * generator.scale)
    _require_tensor(where, "forward(lr)", sr, shape=expected)
    _require_gradients(where, generator, sr.float().mean())
    _require_round_trip(where, generator, lr, registry)
    return generator


def check_discriminator(name: str, params: Mapping[str, Any] | None = None, *,
                        registry: Registry | None = None) -> Discriminator:
    """Check discriminator ``name``: logits with the batch as first dimension for two crop sizes
    (32x32 and 48x40), finite; gradients reach every trainable parameter; its ``regularization``
    (if any) is a finite scalar that backpropagates; save/load round trip."""
    registry, entry = _entry("discriminator", name, registry)
    discriminator = _build(registry, entry, params or {}, Discriminator)
    where = _label(entry)
    discriminator.train()
    for height, width in ((32, 32), (48, 40)):
        image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height))
        logits = _run(where, f"forward on a 2x3x{height}x{width} batch", lambda: discriminator(image))
        _require_tensor(where, f"forward on a 2x3x{height}x{width} batch", logits)
        _require(logits.dim() >= 1 and logits.shape[0] == 2,
                 f"{where}: forward on a batch of 2 must return logits whose first dimension is the batch (2), "
                 f"got shape {tuple(logits.shape)}")
    _require_gradients(where, discriminator, logits.float().mean())
    _check_regularization(where, discriminator)
    _require_round_trip(where, discriminator, torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
                        registry)
    return discriminator


def check_loss(name: str, params: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
               scale: int = 4) -> Loss:
    """Check loss ``name``: a finite scalar from a LossContext of (2, 3, 16, 16) images, with finite
    gradients to ``sr``. A loss that needs a discriminator gets a small one; an AdversarialLoss's
    ``discriminator_loss`` must be a finite scalar whose gradients reach the discriminator."""
    registry, entry = _entry("loss", name, registry)
    loss = _build(registry, entry, _with_scale(entry, params, scale), Loss)
    where = _label(entry)
    seeded = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 16, 16, generator=seeded)
    sr = torch.rand(2, 3, 16, 16, generator=seeded).requires_grad_()
    discriminator = _ToyDiscriminator() if loss.needs_discriminator else None
    ctx = LossContext(sr=sr, hr=hr, lr=torch.rand(2, 3, 4, 4, generator=seeded), discriminator=discriminator)
    try:
        value = loss(ctx)
    except SrframeError as exc:
        if discriminator is None and "discriminator" in str(exc):
            raise ContractError(f"{where}: forward(ctx) uses the discriminator, but the class does not declare it: "
                                "set the class attribute needs_discriminator = True (or subclass AdversarialLoss)") \
                from exc
        raise ContractError(f"{where}: forward(ctx) raised {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ContractError(f"{where}: forward(ctx) raised {type(exc).__name__}: {exc}") from exc
    _require_tensor(where, "forward(ctx)", value, shape=())
    _require(value.requires_grad, f"{where}: the loss does not depend on ctx.sr, so no gradient would reach the "
                                  "generator (is it computed under torch.no_grad() or from detached tensors?)")
    _run(where, "backward from the loss", value.backward)
    _require(sr.grad is not None and bool(torch.isfinite(sr.grad).all()),
             f"{where}: the loss must give sr a finite gradient, got {None if sr.grad is None else 'non-finite values'}")
    if isinstance(loss, AdversarialLoss):
        assert discriminator is not None
        discriminator.zero_grad()
        d_ctx = DiscriminatorContext(real=hr, fake=sr.detach(), discriminator=discriminator)
        d_value = _run(where, "discriminator_loss(ctx)", lambda: loss.discriminator_loss(d_ctx))
        _require_tensor(where, "discriminator_loss(ctx)", d_value, shape=())
        _require(d_value.requires_grad, f"{where}: discriminator_loss(ctx) does not depend on the discriminator, so "
                                        "no gradient would train it (use ctx.real_logits / ctx.fake_logits)")
        _require_gradients(where, discriminator, d_value, what="discriminator_loss(ctx)")
    elif callable(getattr(loss, "discriminator_loss", None)):
        raise ContractError(f"{where}: it has a discriminator_loss method but is not a srframe.AdversarialLoss; "
                            "subclass AdversarialLoss so stages with a discriminator can train it")
    return loss


def check_degradation(name: str, params: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
                      scale: int = 4) -> Degradation:
    """Check degradation ``name``: (2, 3, 8 s, 8 s) in [0, 1] -> (2, 3, 8, 8) floats in [0, 1] on the
    same device; the same ``torch.Generator`` state gives the same LR; the HR batch is not modified."""
    registry, entry = _entry("degradation", name, registry)
    degradation = _build(registry, entry, _with_scale(entry, params, scale), Degradation)
    where = _label(entry)
    factor = getattr(degradation, "scale", None)
    _require(isinstance(factor, int) and factor > 0, f"{where}: `scale` must be a positive int, got {factor!r}")
    hr = torch.rand(2, 3, 8 * factor, 8 * factor, generator=torch.Generator().manual_seed(0))
    original = hr.clone()
    first = _run(where, "__call__(hr, generator)", lambda: degradation(hr, torch.Generator().manual_seed(7)))
    _require_tensor(where, "__call__(hr, generator)", first, shape=(2, 3, 8, 8))
    _require(first.dtype.is_floating_point and first.device == hr.device,
             f"{where}: LR must be floats on the HR batch's device, got {first.dtype} on {first.device}")
    _require(float(first.min()) >= -1e-6 and float(first.max()) <= 1 + 1e-6,
             f"{where}: LR values must lie in [0, 1], got [{float(first.min()):.4g}, {float(first.max()):.4g}]")
    _require(torch.equal(hr, original), f"{where}: the HR batch was modified in place; work on a copy")
    torch.manual_seed(12345)  # a degradation that draws from torch's global generator now differs between calls
    second = degradation(hr, torch.Generator().manual_seed(7))
    _require(torch.equal(first, second),
             f"{where}: not deterministic: the same generator state gave different LR batches; draw every random "
             "number from the `generator` argument, not from torch's global generator")
    return degradation


def check_dataset(name: str, params: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
                  scale: int = 4) -> Any:
    """Check dataset ``name`` in both modes: training items ``{"hr": (C, P, P)}`` uint8/uint16, the
    same for the same ``(index, seed)`` key; validation items whole images with sides divisible by
    the scale and a ``"name"``. Returns the training dataset."""
    registry, entry = _entry("dataset", name, registry)
    where = _label(entry)
    base = _with_scale(entry, params, scale)
    datasets = {}
    modes = ("train", "val") if "mode" in entry.schema.fields else ("train",)
    for mode in modes:
        dataset = _build(registry, entry, {**base, "mode": mode} if len(modes) == 2 else base, None)
        _require(len(dataset) > 0, f"{where}: the {mode} dataset is empty")
        item = _run(where, f"{mode} item 0", lambda: dataset[(0, 1)] if mode == "train" else dataset[0])
        _require(isinstance(item, Mapping) and isinstance(item.get("hr"), torch.Tensor),
                 f'{where}: a {mode} item must be a mapping with an "hr" tensor, got {type(item).__name__}')
        hr = item["hr"]
        _require(hr.dim() == 3 and hr.dtype in (torch.uint8, torch.uint16),
                 f"{where}: {mode} HR images must be (C, H, W) uint8 or uint16, got {tuple(hr.shape)} {hr.dtype}")
        factor = base.get("scale", scale)
        _require(hr.shape[-1] % factor == 0 and hr.shape[-2] % factor == 0,
                 f"{where}: {mode} HR size {tuple(hr.shape[-2:])} is not a multiple of the scale {factor}")
        if mode == "train":
            _require(hr.shape[-1] == hr.shape[-2], f"{where}: training patches must be square, got {tuple(hr.shape)}")
            _require(torch.equal(hr, dataset[(0, 1)]["hr"]),
                     f"{where}: the same (index, seed) key gave different patches; draw randomness from the seed")
        else:
            _require(isinstance(item.get("name"), str), f'{where}: validation items need a "name" string')
        datasets[mode] = dataset
    return datasets["train"]


class _ToyDiscriminator(Discriminator):
    """A two-conv discriminator for checking losses that need one."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.body(img).flatten(1).mean(1)


def _entry(kind: str, name: str, registry: Registry | None) -> tuple[Registry, Entry]:
    if registry is None:
        from .plugins import registry
    entry = registry.get(kind, name)
    _check_schema(registry, entry)
    return registry, entry


def _label(entry: Entry) -> str:
    return f'{entry.kind} "{entry.name}" ({entry.origin})'


def _check_schema(registry: Registry, entry: Entry) -> None:
    """Closed (unless marked open) and every default round-trips through TOML."""
    import tomli_w

    from .recipe.spec import to_toml_data

    where = _label(entry)
    schema = entry.schema
    if schema.open and not getattr(entry.factory, "srframe_open_schema", False):
        raise ContractError(f"{where}: its schema is open (**kwargs), so misspelt recipe keys pass unchecked")
    for field in schema.fields.values():
        if field.default is MISSING or field.default is None:
            continue
        data = to_toml_data(field.default)
        try:
            text = tomli_w.dumps({"value": data})
        except (TypeError, ValueError) as exc:
            raise ContractError(f"{where}: the default of `{field.name}` ({field.default!r}) cannot be written to "
                                f"TOML ({exc}); use a TOML value (number, string, boolean, array, table) or None") \
                from exc
        checker = Checker()
        again = checker.check(tomllib.loads(text)["value"], field.annotation, (field.name,))
        if checker.problems:
            raise ContractError(f"{where}: the default of `{field.name}`, written to TOML, does not check against its "
                                f"own type: {checker.problems[0]}")
        if not isinstance(field.default, PurePath) and again != field.default and not _both_nan(again, field.default):
            raise ContractError(f"{where}: the default of `{field.name}` ({field.default!r}) reads back from TOML as "
                                f"{again!r}")


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _check_regularization(where: str, discriminator: Discriminator) -> None:
    seeded = torch.Generator().manual_seed(2)
    ctx = DiscriminatorContext(real=torch.rand(2, 3, 32, 32, generator=seeded),
                               fake=torch.rand(2, 3, 32, 32, generator=seeded), discriminator=discriminator)
    penalty = _run(where, "regularization(ctx)", lambda: discriminator.regularization(ctx))
    if penalty is None:
        return
    _require_tensor(where, "regularization(ctx)", penalty, shape=())
    discriminator.zero_grad(set_to_none=True)
    if penalty.requires_grad:
        _run(where, "backward from regularization(ctx)", penalty.backward)
    discriminator.zero_grad(set_to_none=True)


def _with_scale(entry: Entry, params: Mapping[str, Any] | None, scale: int) -> dict[str, Any]:
    params = dict(params or {})
    if "scale" in entry.schema.fields and "scale" not in params:
        params["scale"] = scale
    return params


def _build(registry: Registry, entry: Entry, params: Mapping[str, Any], interface: type | None) -> Any:
    where = _label(entry)
    if not entry.schema.open:
        try:
            registry.build(entry.kind, entry.name, {**params, TYPO_KEY: 1}, source="srframe.testing")
        except RecipeError as exc:
            if TYPO_KEY not in str(exc):
                raise ContractError(f"{where}: a misspelt key was refused, but the message does not name it: {exc}") \
                    from exc
        else:
            raise ContractError(f"{where}: a misspelt key ({TYPO_KEY} = 1) was accepted")
    try:
        component = registry.build(entry.kind, entry.name, params, source="srframe.testing")
    except SrframeError as exc:
        raise ContractError(f"{where}: cannot be built with {dict(params)!r}: {exc}") from exc
    if interface is not None:
        _require(isinstance(component, interface), f"{where}: built a {type(component).__name__}, "
                                                   f"not a srframe.{interface.__name__}")
    if interface in (Generator, Discriminator):  # saved and rebuilt from what they record
        _require(getattr(component, "srframe_built_from", None) is not None,
                 f"{where}: the built component does not record how it was built (srframe_built_from)")
    return component


def _run(where: str, what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ContractError:
        raise
    except Exception as exc:
        raise ContractError(f"{where}: {what} raised {type(exc).__name__}: {exc}") from exc


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def _require_tensor(where: str, what: str, value: Any, shape: tuple[int, ...] | None = None) -> None:
    _require(isinstance(value, torch.Tensor), f"{where}: {what} must return a tensor, got {type(value).__name__}")
    if shape is not None:
        _require(tuple(value.shape) == shape, f"{where}: {what} returned shape {tuple(value.shape)}, expected {shape}")
    _require(value.dtype.is_floating_point, f"{where}: {what} returned {value.dtype}, expected floats")
    _require(bool(torch.isfinite(value).all()), f"{where}: {what} returned non-finite values")


def _require_gradients(where: str, module: nn.Module, objective: torch.Tensor, what: str = "the output") -> None:
    module.zero_grad(set_to_none=True)
    _run(where, f"backward from {what}", objective.backward)
    missing = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
    _require(not missing, f"{where}: no gradient from {what} reaches {', '.join(missing[:5])}"
                          + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    broken = [name for name, p in module.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    _require(not broken, f"{where}: non-finite gradients in {', '.join(broken[:5])}")


def _require_round_trip(where: str, module: nn.Module, example: torch.Tensor, registry: Registry) -> None:
    from .component_files import load_component, save_component

    module.eval()
    with torch.no_grad():
        before = module(example)
        _require(torch.equal(before, module(example)), f"{where}: two forward passes in eval mode differ")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "component.safetensors"
        _run(where, "save_component", lambda: save_component(module, path))
        loaded = _run(where, "load_component", lambda: load_component(path, registry=registry))
    loaded.eval()
    with torch.no_grad():
        after = loaded(example)
    _require(type(loaded) is type(module) and torch.allclose(before, after, atol=1e-6),
             f"{where}: saved and loaded again, it gives different outputs (max difference "
             f"{float((before - after).abs().max()) if before.shape == after.shape else math.inf:.3g})")
