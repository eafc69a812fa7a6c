"""Community models through spandrel (chaiNNer's model loader) as a srframe plugin.

- Checkpoints of the 40+ architectures spandrel detects load wherever srframe takes a model
  (``srframe.load_generator``, ``srframe eval``, ``srframe upscale --model``, ``init_generator``),
  through the ``srframe_generator_from_state_dict`` hook.
- Generators ``rrdbnet``, ``compact``, ``span``, ``swinir`` (typed keys) and ``spandrel`` (any
  architecture by id, with its hyper-parameters) train from a recipe like any other.
"""

import srframe

from .architectures import FACTORIES
from .detect import srframe_generator_from_state_dict


@srframe.hookimpl
def srframe_register(registry):
    for name, factory in FACTORIES.items():
        registry.add("generator", name, factory)


__all__ = ["srframe_generator_from_state_dict", "srframe_register"]
