"""SRGAN's losses (Ledig et al., CVPR 2017) as a srframe plugin: pixel losses ``mse``, ``l1``, ``charbonnier``."""

import srframe

from .pixel import CharbonnierLoss, L1Loss, MSELoss


@srframe.hookimpl
def srframe_register(registry):
    registry.add("loss", "mse", MSELoss)
    registry.add("loss", "l1", L1Loss)
    registry.add("loss", "charbonnier", CharbonnierLoss)
