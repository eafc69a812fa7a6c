"""A degradation pipeline built from Kornia operations, batched on the device, as a srframe plugin:
degradations ``kornia_first_order`` and ``kornia_second_order`` (Real-ESRGAN style)."""

import srframe

from .factories import first_order, second_order


@srframe.hookimpl
def srframe_register(registry):
    registry.add("degradation", "kornia_first_order", first_order)
    registry.add("degradation", "kornia_second_order", second_order)
