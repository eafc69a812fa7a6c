"""Real-ESRGAN (Wang et al., ICCVW 2021) as a srframe plugin: discriminator ``unet``."""

import srframe

from .discriminator import UNetDiscriminatorSN


@srframe.hookimpl
def srframe_register(registry):
    registry.add("discriminator", "unet", UNetDiscriminatorSN)
