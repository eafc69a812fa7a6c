"""SRResNet (Ledig et al., CVPR 2017) as a srframe plugin: generator ``srresnet``."""

import srframe

from .model import SRResNet


@srframe.hookimpl
def srframe_register(registry):
    registry.add("generator", "srresnet", SRResNet)
