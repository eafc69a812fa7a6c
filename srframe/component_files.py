"""Saving and loading built components (generators, discriminators) as safetensors files.

A component file holds the module's weights and, in its metadata, the registered kind, name
and parameters it was built with, so it can be rebuilt without the recipe that made it::

    srframe.save_component(G, "srresnet_x4.safetensors")
    G = srframe.load_generator("srresnet_x4.safetensors")   # or a run directory

A run directory keeps its generator as ``generator.safetensors`` at the top (the final
weights) and in each checkpoint folder ``checkpoints/<step>/``; the newest is used when the
top-level file is missing (see :mod:`srframe.train.checkpoint` for the whole layout).

Loading runs no code from the file (safetensors holds tensors and strings only) and checks the
file before allocating the model it describes: the component is first built on PyTorch's
``meta`` device (no memory), and its tensors' names and shapes must match the file's header.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import CheckpointError, SrframeError
from .registry import BuiltFrom

logger = logging.getLogger(__name__)

FORMAT = "srframe.component/1"
GENERATOR_FILE = "generator.safetensors"
SHOWN_MISMATCHES = 5  # how many mismatching tensors an error lists


def save_component(component: Any, path: str | Path) -> Path:
    """Write ``component``'s weights and how it was built to ``path`` (written whole or not at all)."""
    from safetensors.torch import save_model

    built_from: BuiltFrom | None = getattr(component, "srframe_built_from", None)
    if built_from is None:
        raise CheckpointError(f"cannot save a {type(component).__name__}: it was not built by srframe.build or a recipe, "
                              "so how to rebuild it is unknown; build it with srframe.build(kind, name, ...)")
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"cannot save the {built_from.kind} to {path}: it is a folder; give a file name, "
                              f"e.g. {path / (built_from.name + '.safetensors')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    metadata = {"format": FORMAT, "kind": built_from.kind, "name": built_from.name,
                "params": json.dumps(built_from.params, default=str)}
    save_model(component, str(partial), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)  # safetensors creates files 0600; give them the mode open() would
    os.replace(partial, path)
    return path


def read_built_from(path: str | Path) -> BuiltFrom:
    """How the component saved at ``path`` was built (kind, name, parameters), read from its header only.

    Raises CheckpointError when ``path`` is not a srframe component file, or its metadata is damaged.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"component file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a file that is not safetensors
        raise CheckpointError(f"{path} is not a safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} has no srframe metadata (format {FORMAT!r}), so how to build its model is "
                              "unknown: build the model with srframe.build(...) and load the weights with "
                              "safetensors.torch.load_model(model, path)")
    return _built_from_metadata(path, metadata)


def _built_from_metadata(path: Path, metadata: Mapping[str, str]) -> BuiltFrom:
    """Raises CheckpointError naming the file when its kind, name or parameters are missing or not JSON."""
    absent = [key for key in ("kind", "name", "params") if not metadata.get(key)]
    if absent:
        raise CheckpointError(f"{path} has srframe metadata without {', '.join(absent)}, so how to build its model "
                              "is unknown: the file is damaged or was not written by srframe.save_component")
    try:
        params = json.loads(metadata["params"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: the parameters in its metadata are not JSON ({exc}): the file is damaged "
                              "or was not written by srframe.save_component") from exc
    if not isinstance(params, dict):
        raise CheckpointError(f"{path}: the parameters in its metadata are a JSON {type(params).__name__}, not an "
                              "object: the file is damaged or was not written by srframe.save_component")
    return BuiltFrom(metadata["kind"], metadata["name"], params)


def load_component(path: str | Path, kind: str | None = None, *, registry: Any = None) -> Any:
    """Rebuild the component saved at ``path`` and load its weights; ``kind`` checks what it is.

    The component is built on the meta device first and compared with the file's header, so a file
    whose metadata asks for another (or a far larger) model is refused before any memory is
    allocated for it; a component that cannot be built on the meta device skips that check
    (``load_model`` still refuses weights that do not fit, after the real build).
    Raises CheckpointError naming the file: not a component file, another kind, parameters that do
    not build, tensors that do not fit the model, not enough memory to build it.
    """
    from safetensors.torch import load_model

    if registry is None:
        from .plugins import registry
    path = Path(path)
    built = read_built_from(path)
    if kind is not None and built.kind != kind:
        raise CheckpointError(f"{path} holds a {built.kind} ({built.name}), not a {kind}")
    _check_header_fits(path, built, registry)
    component = _build(path, built, registry)
    try:
        load_model(component, str(path))
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"the weights in {path} do not fit {built.kind} \"{built.name}\": "
                              f"{detail[:600]}{'...' if len(detail) > 600 else ''}") from exc
    except Exception as exc:  # safetensors' own errors for a damaged file
        raise CheckpointError(f"cannot read the weights in {path}: {type(exc).__name__}: {exc}") from exc
    return component


def _build(path: Path, built: BuiltFrom, registry: Any) -> Any:
    """Raises CheckpointError naming the file when the component cannot be built, or memory runs out."""
    try:
        return registry.build(built.kind, built.name, built.params, source=str(path))
    except SrframeError as exc:
        raise CheckpointError(f"cannot rebuild the {built.kind} saved in {path}: {exc}") from exc
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        raise CheckpointError(f"not enough memory to build the {built.kind} \"{built.name}\" saved in {path} with "
                              f"parameters {json.dumps(built.params, default=str)}: {type(exc).__name__}: "
                              f"{str(exc).strip()[:200]}") from exc


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return any(sign in text for sign in ("not enough memory", "DefaultCPUAllocator", "can't allocate memory",
                                         "out of memory"))


def _check_header_fits(path: Path, built: BuiltFrom, registry: Any) -> None:
    """Build the component on the meta device and compare its tensors with the file's header.

    Raises CheckpointError listing a few mismatching tensors (the file's shape, the model's) when
    they differ, before the real build allocates anything. A component that cannot be built on
    the meta device (a plugin computing with its weights in its constructor) is not checked here.
    """
    import torch
    from safetensors import safe_open

    try:
        with torch.device("meta"):
            model = registry.build(built.kind, built.name, built.params, source=str(path))
        expected = model.state_dict(keep_vars=True)
    except Exception as exc:  # the real build reports what is wrong, or builds what meta could not
        logger.debug("%s: no meta-device check (%s: %s)", path, type(exc).__name__, exc)
        return
    try:
        with safe_open(str(path), framework="pt") as handle:
            found = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read the tensors' header of {path}: {exc}") from exc
    problems = _header_mismatches(found, expected)
    if problems:
        shown = "; ".join(problems[:SHOWN_MISMATCHES]) + (f"; and {len(problems) - SHOWN_MISMATCHES} more"
                                                          if len(problems) > SHOWN_MISMATCHES else "")
        raise CheckpointError(f"the weights in {path} do not fit {built.kind} \"{built.name}\" built with the "
                              f"parameters in its metadata {json.dumps(built.params, default=str)}: {shown}. Refused "
                              "before building the model: the file is damaged, its metadata was altered, or the "
                              f"{built.kind}'s code changed since it was saved")


def _header_mismatches(found: Mapping[str, list[int]], expected: Mapping[str, Any]) -> list[str]:
    """Tensors whose shape differs (file vs model), that the file lacks, or that the model has not.

    A tensor shared under several names (tied weights, which safetensors saves once) is missing
    only when the file has none of its names.
    """
    names: dict[int, list[str]] = {}
    for key, tensor in expected.items():
        names.setdefault(id(tensor), []).append(key)
    problems = [f"{key}: file {found[key]}, model {list(tensor.shape)}" for key, tensor in expected.items()
                if key in found and found[key] != list(tensor.shape)]
    problems += [f"{group[0]}: not in the file" for group in names.values() if not any(k in found for k in group)]
    problems += [f"{key}: in the file, not in the model" for key in found if key not in expected]
    return problems


def load_generator(path: str | Path) -> Any:
    """The generator in a component file, a checkpoint folder, a run directory or a community
    checkpoint (``.pth``, ``.pt``, ``.ckpt``, ``.bin`` or ``.safetensors`` another project wrote, its
    architecture recognised by a plugin: see :mod:`srframe.community`), in eval mode.

    Raises CheckpointError naming the file when it cannot be found, read safely or built.
    """
    file = find_generator_file(Path(path))
    if is_component_file(file):
        return load_component(file, "generator").eval()
    from .community import load_community_generator

    return load_community_generator(file).eval()


def is_component_file(path: Path) -> bool:
    """Whether ``path`` is a safetensors file srframe.save_component wrote, whatever its name (else: a
    community checkpoint, or no weights at all)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except Exception:  # not safetensors at all: the community reader says what is wrong with it
        return False


def generator_built_from(path: str | Path) -> BuiltFrom:
    """How the generator at ``path`` (as :func:`load_generator` takes) is built: read from a component
    file's header, or, for a community checkpoint, from the generator its plugin builds.

    A community checkpoint's answer is kept for the process, per file version (path, size, modification
    time): ``recipe check`` asks twice per stage (the file, then whether it fits the recipe), and building
    the model to ask costs a second for a large one.

    Raises CheckpointError naming the file when it holds no generator that can be read.
    """
    file = find_generator_file(Path(path))
    if is_component_file(file):
        return read_built_from(file)
    from .community import load_community_generator

    status = file.stat()
    key = (str(file.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _community_built_from:
        _community_built_from[key] = load_community_generator(file).srframe_built_from
    return _community_built_from[key]


_community_built_from: dict[tuple[str, int, int], BuiltFrom] = {}


def find_generator_file(path: Path) -> Path:
    """``path`` itself if a file; else the generator a run directory or checkpoint folder holds
    (the layout is :class:`srframe.train.checkpoint.RunDir`'s)."""
    from .train.checkpoint import RunDir

    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"no such file or run directory: {path}")
    found = RunDir(path).generator_file()
    if found is None:
        raise CheckpointError(f"{path} holds no generator: expected {path / GENERATOR_FILE} or "
                              f"{path / 'checkpoints' / '<step>' / GENERATOR_FILE}")
    return found
