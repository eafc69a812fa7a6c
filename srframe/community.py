"""Checkpoints other projects wrote (BasicSR, Real-ESRGAN, traiNNer-redux, model databases), read
without running code from them, and turned into srframe generators by the plugin that knows their
architecture (srframe's ``spandrel`` plugin knows the 40+ that spandrel detects).

A file is read by its suffix:

- ``.safetensors``: tensors and strings only, nothing to run;
- ``.pth``, ``.pt``, ``.ckpt``, ``.bin``: a pickle, read with ``torch.load(weights_only=True)``,
  whose unpickler builds tensors and plain containers and nothing else. A pickle that asks for
  anything more (an object whose unpickling would call code) is refused before any of it runs.
  TorchScript archives are programs, not weights, and are refused too.

The weights are then unwrapped as the field writes them (BasicSR's ``{"params_ema": ...}`` or
``{"params": ...}``, Lightning's ``{"state_dict": ...}``, a DataParallel ``module.`` prefix), and
the plugins are asked, through the ``srframe_generator_from_state_dict`` hook, whose they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import CheckpointError

logger = logging.getLogger(__name__)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
# Keys under which projects nest the generator's weights, in the order they are preferred
# (BasicSR keeps both the EMA weights and the raw ones: the EMA ones are what it evaluates).
WRAPPERS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net", "netG",
            "generator")
PREFIXES = ("module.", "netG.")  # DataParallel / DistributedDataParallel, and some GAN trainers
SHOWN_KEYS = 6
REGISTER_HINT = ("To load another architecture, install a plugin that implements the "
                 "srframe_generator_from_state_dict hook (see the docs' \"Bring your own model\" page); for weights "
                 "of a model you build yourself, build it with srframe.build(...) and load them with "
                 "safetensors.torch.load_model(model, path) or model.load_state_dict")


def load_community_generator(path: Path) -> Any:
    """The generator whose weights ``path`` holds, built by the plugin that recognises them (train mode).

    Raises CheckpointError naming the file: an unsupported suffix, a pickle that would run code, a
    TorchScript archive, damaged bytes, no tensors, or weights no installed plugin recognises (with a
    few of their names and shapes, and how to add an architecture).
    """
    from .plugins import generator_from_state_dict, registry

    state_dict = read_state_dict(path)
    generator = generator_from_state_dict(state_dict, str(path))
    if generator is None:
        disabled = [name for name in registry.disabled_plugins if name == "spandrel"]
        advice = ("the spandrel plugin, which recognises 40+ architectures, is disabled; enable it. "
                  if disabled else "")
        raise CheckpointError(f"{path}: no installed plugin recognises the architecture of these weights "
                              f"({len(state_dict)} tensors: {describe_keys(state_dict)}). {advice}{REGISTER_HINT}")
    built = getattr(generator, "srframe_built_from", None)
    logger.info("%s: %d tensors recognised as %s (generator %s, %s)", path, len(state_dict),
                getattr(generator, "architecture", type(generator).__name__), built.name if built else "?",
                built.params if built else {})
    return generator


def read_state_dict(path: Path) -> dict[str, Any]:
    """The flat ``{name: tensor}`` mapping a community checkpoint holds, on the CPU.

    Raises CheckpointError naming the file when it cannot be read safely or holds no tensors.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CheckpointError(f"{path}: not a weights file srframe reads (suffix {suffix or '(none)'!r}); "
                              f"expected one of {', '.join(SUFFIXES)}, a srframe component file or a run directory")
    loaded = _read_safetensors(path) if suffix == ".safetensors" else _read_pickle(path)
    return unwrap(loaded, path)


def unwrap(loaded: Any, path: Path) -> dict[str, Any]:
    """The tensors under the first wrapper key found (``params_ema``, ``params``, ``state_dict``, ...),
    or the mapping itself, with a prefix every key shares (``module.``) removed."""
    import torch

    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not named tensors")
    for key in WRAPPERS:  # the first wrapper that holds something (BasicSR may save an empty params_ema)
        if isinstance(loaded.get(key), Mapping) and loaded[key]:
            loaded = loaded[key]
            break
    tensors = {name: value for name, value in loaded.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        keys = ", ".join(repr(k) for k in list(loaded)[:SHOWN_KEYS])
        raise CheckpointError(f"{path} holds no tensors at its top level or under {', '.join(WRAPPERS)} "
                              f"(its keys: {keys or 'none'}); it is not a model's weights")
    for prefix in PREFIXES:
        if all(name.startswith(prefix) for name in tensors):
            tensors = {name[len(prefix):]: value for name, value in tensors.items()}
    return tensors


def describe_keys(state_dict: Mapping[str, Any]) -> str:
    """A few tensor names with their shapes, for error messages."""
    shown = [f"{name} {list(tensor.shape)}" for name, tensor in list(state_dict.items())[:SHOWN_KEYS]]
    more = len(state_dict) - len(shown)
    return ", ".join(shown) + (f", and {more} more" if more > 0 else "")


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError for a damaged header or body, OSError
        raise CheckpointError(f"{path} cannot be read: it is not a valid safetensors file ({exc})") from exc


def _read_pickle(path: Path) -> Any:
    from .weights import NO_CODE, load_pickle_safely, torch_load_problem

    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        return load_pickle_safely(path)
    except Exception as exc:  # UnpicklingError, RuntimeError (TorchScript, damaged zip), OSError
        if "TorchScript" in str(exc):
            raise CheckpointError(f"{path} is a TorchScript archive: a program, not weights, and srframe does not "
                                  "run programs from weight files. Load the original checkpoint (.pth or "
                                  ".safetensors) instead") from exc
        problem = torch_load_problem(exc)
        if "would run code" in problem:
            raise CheckpointError(f"{path} cannot be read: {problem}. {NO_CODE}. If you trust the file, convert it "
                                  "to safetensors in the project that wrote it") from exc
        raise CheckpointError(f"{path} cannot be read ({path.stat().st_size} bytes): {problem}. It is damaged "
                              "(a truncated download?) or not a PyTorch checkpoint: get the file again") from exc
