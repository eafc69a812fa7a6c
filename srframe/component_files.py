"""Saving and loading built components (generators, discriminators) as safetensors files.

A component file holds the module's weights and, in its metadata, the registered kind, name
and parameters it was built with, so it can be rebuilt without the recipe that made it::

    srframe.save_component(G, "srresnet_x4.safetensors")
    G = srframe.load_generator("srresnet_x4.safetensors")   # or a run directory

A run directory keeps its generator as ``generator.safetensors`` at the top (the final
weights) and in each checkpoint folder ``checkpoints/<step>/``; the newest is used when the
top-level file is missing (see :mod:`srframe.train.checkpoint` for the whole layout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import CheckpointError, SrframeError
from .registry import BuiltFrom

FORMAT = "srframe.component/1"
GENERATOR_FILE = "generator.safetensors"


def save_component(component: Any, path: str | Path) -> Path:
    """Write ``component``'s weights and how it was built to ``path`` (written whole or not at all)."""
    from safetensors.torch import save_model

    built_from: BuiltFrom | None = getattr(component, "srframe_built_from", None)
    if built_from is None:
        raise CheckpointError(f"cannot save a {type(component).__name__}: it was not built by srframe.build or a recipe, "
                              "so how to rebuild it is unknown; build it with srframe.build(kind, name, ...)")
    path = Path(path)
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

    Raises CheckpointError when ``path`` is not a srframe component file.
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
    return BuiltFrom(metadata["kind"], metadata["name"], json.loads(metadata["params"]))


def load_component(path: str | Path, kind: str | None = None, *, registry: Any = None) -> Any:
    """Rebuild the component saved at ``path`` and load its weights; ``kind`` checks what it is."""
    from safetensors.torch import load_model

    if registry is None:
        from .plugins import registry
    path = Path(path)
    built = read_built_from(path)
    metadata = {"kind": built.kind, "name": built.name}
    if kind is not None and metadata["kind"] != kind:
        raise CheckpointError(f"{path} holds a {metadata['kind']} ({metadata['name']}), not a {kind}")
    try:
        component = registry.build(built.kind, built.name, built.params, source=str(path))
    except SrframeError as exc:
        raise CheckpointError(f"cannot rebuild the {metadata['kind']} saved in {path}: {exc}") from exc
    try:
        load_model(component, str(path))
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {path} do not fit {metadata['kind']} \"{metadata['name']}\": {exc}") from exc
    return component


def load_generator(path: str | Path) -> Any:
    """The generator in a component file, a checkpoint folder or a run directory, in eval mode."""
    return load_component(find_generator_file(Path(path)), "generator").eval()


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
