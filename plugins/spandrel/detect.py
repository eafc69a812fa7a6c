"""Recognising a community checkpoint's architecture with spandrel: the plugin's
``srframe_generator_from_state_dict`` hook."""

from __future__ import annotations

from typing import Any

import srframe
from srframe.community import describe_keys
from srframe.errors import CheckpointError
from srframe.registry import BuiltFrom

from .architectures import hyperparameters_of, quiet, recipe_form
from .generator import Capabilities, SpandrelGenerator


@srframe.hookimpl
def srframe_generator_from_state_dict(state_dict: dict[str, Any], source: str) -> SpandrelGenerator | None:
    """The generator spandrel builds for these weights, or None when spandrel knows no architecture
    for them. It records the registered generator (``rrdbnet``, ``compact``, ``span``, ``swinir`` or
    ``spandrel``) and parameters that rebuild it, so it saves as a srframe component file.

    Raises CheckpointError naming ``source`` when spandrel recognises the architecture but the
    weights do not load into it, or the model is not an image-to-image model.
    """
    from spandrel import ImageModelDescriptor, MAIN_REGISTRY, UnsupportedModelError, canonicalize_state_dict

    try:
        with quiet():
            descriptor = MAIN_REGISTRY.load(canonicalize_state_dict(dict(state_dict)))
    except UnsupportedModelError:
        return None
    except Exception as exc:  # detection matched, building or loading failed: shapes spandrel did not expect
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{source}: spandrel took these weights for an architecture it knows, but they do "
                              f"not load into it ({type(exc).__name__}: {detail[:300]}); the file's "
                              f"tensors: {describe_keys(state_dict)}") from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise CheckpointError(f"{source} holds a {descriptor.architecture.name} model for {descriptor.purpose}, "
                              "which takes a mask as well as an image: it is not a super-resolution generator")
    architecture = str(descriptor.architecture.id)
    name, params = recipe_form(architecture, hyperparameters_of(descriptor.model))
    generator = SpandrelGenerator(descriptor.model, Capabilities.of(descriptor), descriptor._call_fn)
    generator.srframe_built_from = BuiltFrom("generator", name, params)
    return generator
