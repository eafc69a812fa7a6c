"""Community architectures as trainable srframe generators, built from hyper-parameters in a recipe.

Four are registered under their own names with typed, checked keys (srframe's ``scale``,
``in_channels`` and ``out_channels`` mapped to each architecture's own names): ``rrdbnet``,
``compact``, ``span`` and ``swinir``. Every other architecture spandrel implements is reachable
as ``spandrel`` with ``architecture`` and its ``hyperparameters`` as spandrel's classes name them.
The networks are spandrel's own classes, so a generator trained here has the key layout of the
checkpoints spandrel loads, and a checkpoint loaded here fine-tunes in place.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch import nn

from srframe.errors import CheckpointError
from srframe.schema import Range, close_matches, enforce

from .generator import Capabilities, SpandrelGenerator

Channels = Annotated[int, Range(min=1)]


@dataclass(frozen=True)
class Named:
    """A registered generator over one spandrel architecture: its keys <-> the class's hyper-parameters."""

    name: str  # the srframe generator name
    architecture: str  # spandrel's architecture id
    to_hyperparameters: Callable[[Mapping[str, Any]], dict[str, Any]]  # recipe keys -> the class's keywords
    from_hyperparameters: Callable[[Mapping[str, Any]], dict[str, Any]]  # the inverse, where it exists


def network_class(architecture: str) -> type[nn.Module]:
    """spandrel's module class for ``architecture`` (``spandrel.architectures.<id>.<id>``).

    Raises ValueError naming the known architectures when spandrel has no such class.
    """
    from spandrel import MAIN_REGISTRY

    known = sorted(str(support.architecture.id) for support in MAIN_REGISTRY.architectures())
    if architecture not in known:
        cased = {name.lower(): name for name in known}.get(architecture.lower())
        hint = f'; did you mean "{cased}"?' if cased else close_matches(architecture, known)
        raise ValueError(f"spandrel has no architecture {architecture!r}{hint} Architectures: {', '.join(known)}.")
    module = importlib.import_module(f"spandrel.architectures.{architecture}")
    found = getattr(module, architecture, None)
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise ValueError(f"spandrel's {architecture} exposes no network class named {architecture}, so it cannot be "
                         "built from hyper-parameters (it still loads from a checkpoint)")
    return found


def build(architecture: str, hyperparameters: Mapping[str, Any]) -> SpandrelGenerator:
    """A freshly initialised network of ``architecture`` built with ``hyperparameters``, wrapped."""
    with quiet():
        net = network_class(architecture)(**hyperparameters)
        capabilities, call = describe(net, architecture)
    return SpandrelGenerator(net, capabilities, call)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Without the deprecation notes torch prints while spandrel's transformers are built (meshgrid's
    indexing), which say nothing to a user of the model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
        yield


def describe(net: nn.Module, architecture: str) -> tuple[Capabilities, Callable | None]:
    """What spandrel's descriptor says of ``net`` (scale, channels, size rules, precisions).

    spandrel reads these while loading a state dict, so it is given ``net``'s: shapes only, on the
    meta device, where the architecture's constructor allows (nothing is allocated); else the real
    tensors, into a second network that is dropped again.
    """
    from spandrel import MAIN_REGISTRY, ImageModelDescriptor

    load = MAIN_REGISTRY[architecture].architecture.load
    state = net.state_dict()
    try:
        try:
            with torch.device("meta"):
                descriptor = load({key: torch.empty_like(value, device="meta") for key, value in state.items()})
        except (RuntimeError, NotImplementedError):  # a constructor computing with tensors (SwinIR's .item())
            descriptor = load(dict(state))
    except Exception as exc:  # spandrel's detection code meets settings it cannot read back
        raise ValueError(f"spandrel cannot read back a {architecture} network built with these hyper-parameters "
                         f"({type(exc).__name__}: {exc}); check them against spandrel's {architecture} class") from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(f"spandrel's {architecture} is a {descriptor.purpose} model that takes a mask as well as an "
                         "image: it is not a super-resolution generator")
    return Capabilities.of(descriptor), descriptor._call_fn  # spandrel has no public name for call_fn


def hyperparameters_of(net: nn.Module) -> dict[str, Any]:
    """The keywords ``net`` was built with, defaults included (spandrel's ``store_hyperparameters``)."""
    found = getattr(net, "hyperparameters", None)
    if not isinstance(found, dict):
        raise CheckpointError(f"spandrel's {type(net).__name__} does not record its hyper-parameters, so srframe "
                              "cannot save it in a form that rebuilds it")
    return dict(found)


def non_default(cls: type, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters that differ from the class's defaults (what a recipe or a file must say)."""
    defaults = _defaults(cls)
    return {key: value for key, value in hyperparameters.items()
            if key not in defaults or _same(defaults[key], value) is False}


def recipe_form(architecture: str, hyperparameters: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registered generator name and parameters that rebuild a network of these hyper-parameters:
    one of the named generators where its keys express them exactly, else ``spandrel``."""
    cls = network_class(architecture)
    for named in NAMED:
        if named.architecture != architecture:
            continue
        try:
            params = named.from_hyperparameters(hyperparameters)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        if _same(_full(cls, named.to_hyperparameters(params)), _full(cls, hyperparameters)):
            return named.name, params
    return "spandrel", {"architecture": architecture, "hyperparameters": non_default(cls, hyperparameters)}


def _defaults(cls: type) -> dict[str, Any]:
    return {name: parameter.default for name, parameter in inspect.signature(cls.__init__).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def _full(cls: type, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    return {**_defaults(cls), **hyperparameters}


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON would store them (tuples as lists; classes such as norm layers by name)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


# --- the named generators ------------------------------------------------------------------------------

RRDBScale = Literal[1, 2, 4, 8]
UNSHUFFLE = {1: 4, 2: 2}  # Real-ESRGAN's x1 and x2 RRDBNet: pixel-unshuffle the input, then upsample x4


def rrdbnet(scale: RRDBScale = 4, in_channels: Channels = 3, out_channels: Channels = 3,
            num_filters: Annotated[int, Range(min=1)] = 64, num_blocks: Annotated[int, Range(min=1)] = 23
            ) -> SpandrelGenerator:
    """RRDBNet, the ESRGAN generator (Wang et al., ECCVW 2018), as Real-ESRGAN (Wang et al., ICCVW 2021)
    trains it: ``num_blocks`` residual-in-residual dense blocks of ``num_filters`` maps (growth 32),
    nearest-neighbour x2 upsampling convolutions. Scales 1 and 2 pixel-unshuffle the input first
    (by 4 and 2), as BasicSR's RRDBNet does. Reads ESRGAN, BasicSR/Real-ESRGAN and BSRGAN checkpoints.
    The network is spandrel's ``ESRGAN`` class."""
    return build("ESRGAN", _rrdb_keywords(dict(scale=scale, in_channels=in_channels, out_channels=out_channels,
                                                num_filters=num_filters, num_blocks=num_blocks)))


def _rrdb_keywords(params: Mapping[str, Any]) -> dict[str, Any]:
    unshuffle = UNSHUFFLE.get(params["scale"])
    return dict(in_nc=params["in_channels"] * (unshuffle or 1) ** 2, out_nc=params["out_channels"],
                num_filters=params["num_filters"], num_blocks=params["num_blocks"],
                scale=4 if unshuffle else params["scale"], shuffle_factor=unshuffle)


def _rrdb_params(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    unshuffle = hyperparameters["shuffle_factor"] or 1
    return dict(scale=hyperparameters["scale"] // unshuffle, in_channels=hyperparameters["in_nc"] // unshuffle**2,
                out_channels=hyperparameters["out_nc"], num_filters=hyperparameters["num_filters"],
                num_blocks=hyperparameters["num_blocks"])


CompactActivation = Literal["prelu", "relu", "leakyrelu"]


def compact(scale: Annotated[int, Range(min=1)] = 4, in_channels: Channels = 3, out_channels: Channels = 3,
            num_feat: Annotated[int, Range(min=1)] = 64, num_conv: Annotated[int, Range(min=0)] = 16,
            act_type: CompactActivation = "prelu") -> SpandrelGenerator:
    """SRVGGNetCompact (Real-ESRGAN's compact model, Wang et al., ICCVW 2021): ``num_conv`` 3x3
    convolutions of ``num_feat`` maps with activations, one sub-pixel upsampler, plus the
    nearest-neighbour upsampled input. ``realesr-general-x4v3`` is 64 maps, 32 convolutions.
    The network is spandrel's ``Compact`` class."""
    return build("Compact", _compact_keywords(dict(scale=scale, in_channels=in_channels, out_channels=out_channels,
                                                    num_feat=num_feat, num_conv=num_conv, act_type=act_type)))


def _compact_keywords(params: Mapping[str, Any]) -> dict[str, Any]:
    return dict(num_in_ch=params["in_channels"], num_out_ch=params["out_channels"], num_feat=params["num_feat"],
                num_conv=params["num_conv"], upscale=params["scale"], act_type=params["act_type"])


def _compact_params(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    return dict(scale=hyperparameters["upscale"], in_channels=hyperparameters["num_in_ch"],
                out_channels=hyperparameters["num_out_ch"], num_feat=hyperparameters["num_feat"],
                num_conv=hyperparameters["num_conv"], act_type=hyperparameters["act_type"])


def span(scale: Annotated[int, Range(min=1)] = 4, in_channels: Channels = 3, out_channels: Channels = 3,
         feature_channels: Annotated[int, Range(min=1)] = 48, norm: bool = True) -> SpandrelGenerator:
    """SPAN, the Swift Parameter-free Attention Network (Wan et al., CVPRW 2024; NTIRE 2024 efficient
    SR winner): six SPAB blocks of ``feature_channels`` maps with parameter-free attention and one
    sub-pixel upsampler. ``norm``: subtract the DIV2K mean and scale to 0..255 inside, as the
    published models do. The network is spandrel's ``SPAN`` class."""
    return build("SPAN", _span_keywords(dict(scale=scale, in_channels=in_channels, out_channels=out_channels,
                                              feature_channels=feature_channels, norm=norm)))


def _span_keywords(params: Mapping[str, Any]) -> dict[str, Any]:
    return dict(num_in_ch=params["in_channels"], num_out_ch=params["out_channels"],
                feature_channels=params["feature_channels"], upscale=params["scale"], norm=params["norm"])


def _span_params(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    return dict(scale=hyperparameters["upscale"], in_channels=hyperparameters["num_in_ch"],
                out_channels=hyperparameters["num_out_ch"], feature_channels=hyperparameters["feature_channels"],
                norm=hyperparameters["norm"])


SwinIRScale = Literal[1, 2, 3, 4, 8]
SwinIRUpsampler = Literal["pixelshuffle", "pixelshuffledirect", "nearest+conv", ""]  # "": none (x1 models)


def swinir(scale: SwinIRScale = 4, in_channels: Channels = 3, img_size: Annotated[int, Range(min=1)] = 64,
           window_size: Annotated[int, Range(min=1)] = 8, embed_dim: Annotated[int, Range(min=1)] = 180,
           depths: list[int] = [6, 6, 6, 6, 6, 6],  # noqa: B006 - read only, as the schema shows it
           num_heads: list[int] = [6, 6, 6, 6, 6, 6],  # noqa: B006
           mlp_ratio: Annotated[float, Range(above=0)] = 2.0,
           upsampler: SwinIRUpsampler = "pixelshuffle", resi_connection: Literal["1conv", "3conv"] = "1conv",
           img_range: Annotated[float, Range(above=0)] = 1.0) -> SpandrelGenerator:
    """SwinIR (Liang et al., ICCVW 2021): residual Swin Transformer blocks, ``depths[i]`` blocks with
    ``num_heads[i]`` heads in group ``i``, windows of ``window_size`` pixels. The defaults are the
    paper's classical x4 model (SwinIR-M); the lightweight model is ``embed_dim = 60``, four groups
    of 6 with 6 heads and ``upsampler = "pixelshuffledirect"``; ``upsampler = ""`` with ``scale = 1`` is
    the denoising and JPEG-artefact models' (no upsampler). ``img_size`` is the training patch
    (LR pixels) the attention masks are precomputed for. Inputs are padded to a multiple of
    ``window_size``. fp16 inference is refused (spandrel marks SwinIR unsafe in half precision).
    The network is spandrel's ``SwinIR`` class."""
    enforce(swinir, dict(depths=depths, num_heads=num_heads, embed_dim=embed_dim, upsampler=upsampler, scale=scale))
    return build("SwinIR", _swinir_keywords(dict(
        scale=scale, in_channels=in_channels, img_size=img_size, window_size=window_size, embed_dim=embed_dim,
        depths=depths, num_heads=num_heads, mlp_ratio=mlp_ratio, upsampler=upsampler,
        resi_connection=resi_connection, img_range=img_range)))


def _swinir_check(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The rules across SwinIR's keys, run by ``srframe recipe check`` and by the factory."""
    if len(params["depths"]) != len(params["num_heads"]):
        yield "num_heads", (f"needs one head count per group of blocks: depths has {len(params['depths'])} "
                            f"groups, num_heads {len(params['num_heads'])}")
    if not params["depths"]:
        yield "depths", "needs at least one group of blocks"
    if any(int(n) < 1 for n in [*params["depths"], *params["num_heads"]]):
        yield "depths", "block and head counts must be >= 1"
    elif any(params["embed_dim"] % int(heads) for heads in params["num_heads"]):
        yield "embed_dim", (f"must be a multiple of every head count (the heads split it): {params['embed_dim']} "
                            f"with num_heads {list(params['num_heads'])}")
    if (params["upsampler"] == "") != (params["scale"] == 1):
        yield "upsampler", 'is "" (no upsampler) exactly when scale = 1'


swinir.check_params = _swinir_check  # type: ignore[attr-defined]


def _swinir_keywords(params: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("img_size", "window_size", "embed_dim", "mlp_ratio", "upsampler", "resi_connection", "img_range")
    return dict(in_chans=params["in_channels"], upscale=params["scale"], depths=list(params["depths"]),
                num_heads=list(params["num_heads"]), **{key: params[key] for key in keys})


def _swinir_params(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("img_size", "window_size", "embed_dim", "mlp_ratio", "upsampler", "resi_connection", "img_range")
    return dict(scale=hyperparameters["upscale"], in_channels=hyperparameters["in_chans"],
                depths=list(hyperparameters["depths"]), num_heads=list(hyperparameters["num_heads"]),
                **{key: hyperparameters[key] for key in keys})


def spandrel(architecture: str, hyperparameters: dict[str, Any] = {},  # noqa: B006 - read only
             scale: Annotated[int, Range(min=1)] | None = None) -> SpandrelGenerator:
    """Any architecture spandrel implements, by its spandrel id (HAT, DAT, OmniSR, RealCUGAN, ...),
    built with ``hyperparameters`` named as that architecture's class names its keywords (its
    defaults for the rest). ``scale`` (a recipe gives its own) must be the scale those settings
    build: the hyper-parameter that sets it is the architecture's (``upscale``, ``up_scale``, ...).
    What a community checkpoint of an architecture without a named generator is saved as, so it
    reloads without the original file."""
    problems = [f"{key}: {message}" for key, message in _spandrel_names(
        dict(architecture=architecture, hyperparameters=hyperparameters))]
    if problems:
        raise ValueError("; ".join(problems))
    try:
        generator = build(architecture, hyperparameters)
    except TypeError as exc:
        raise ValueError(f"spandrel's {architecture} does not take these hyperparameters: {exc}") from exc
    if scale is not None and generator.scale != scale:
        raise ValueError(f"spandrel's {architecture} built with these hyperparameters upscales x{generator.scale}, "
                         f"and the recipe's scale is {scale}: set the hyper-parameter of its scale")
    return generator


def _spandrel_check(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``srframe recipe check``'s rules: the names (:func:`_spandrel_names`), then a trial build, so that
    values the architecture refuses, or a scale other than the recipe's, are found before a run starts
    (the network is built on the CPU and dropped: a second or two for the largest)."""
    named = list(_spandrel_names(params))
    yield from named
    if named:
        return
    architecture = params["architecture"]
    try:
        with torch.no_grad():
            built_scale = build(architecture, params["hyperparameters"]).scale
    except Exception as exc:  # whatever the architecture's constructor or spandrel's reading raises
        detail = " ".join(str(exc).split())[:300]
        yield "hyperparameters", f"spandrel's {architecture} cannot be built with these: {type(exc).__name__}: {detail}"
        return
    if params.get("scale") is not None and built_scale != params["scale"]:
        yield "hyperparameters", (f"build a x{built_scale} {architecture}, and the recipe's scale is {params['scale']}: "
                                  "set the hyper-parameter of its scale (upscale, up_scale, ...)")


def _spandrel_names(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The architecture must exist and take images only; the hyper-parameters must be its keywords."""
    try:
        cls = network_class(params["architecture"])
    except ValueError as exc:
        yield "architecture", str(exc)
        return
    if params["architecture"] in MASKED:
        yield "architecture", f"{params['architecture']} takes a mask as well as an image: not a generator"
    accepted = _defaults(cls).keys() | _required(cls)
    for key in params["hyperparameters"]:
        if key not in accepted:
            yield ("hyperparameters", key), (f"not a keyword of spandrel's {params['architecture']}"
                                             f"{close_matches(key, sorted(accepted))} Keywords: "
                                             f"{', '.join(sorted(accepted))}.")


def _spandrel_normalize(params: Mapping[str, Any]) -> dict[str, Any]:
    """The same model's parameters whatever defaults they spell out (for init_generator's comparison)."""
    try:
        cls = network_class(params["architecture"])
    except (KeyError, ValueError):
        return dict(params)
    hyperparameters = json.loads(json.dumps(non_default(cls, params.get("hyperparameters", {})), default=repr))
    return {"architecture": params["architecture"], "hyperparameters": hyperparameters}


def _required(cls: type) -> set[str]:
    return {name for name, parameter in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and parameter.default is inspect.Parameter.empty
            and parameter.kind is not inspect.Parameter.VAR_KEYWORD}


spandrel.check_params = _spandrel_check  # type: ignore[attr-defined]
spandrel.normalize_params = _spandrel_normalize  # type: ignore[attr-defined]
MASKED = ("LaMa",)  # spandrel's architectures that inpaint (image + mask)


NAMED = (
    Named("rrdbnet", "ESRGAN", _rrdb_keywords, _rrdb_params),
    Named("compact", "Compact", _compact_keywords, _compact_params),
    Named("span", "SPAN", _span_keywords, _span_params),
    Named("swinir", "SwinIR", _swinir_keywords, _swinir_params),
)
FACTORIES = {"rrdbnet": rrdbnet, "compact": compact, "span": span, "swinir": swinir, "spandrel": spandrel}
