"""SRGAN (Ledig et al., CVPR 2017) as a srframe plugin: discriminator ``srgan``; losses ``mse``, ``l1``,
``charbonnier``, ``vgg`` (content) and ``adversarial``."""

import srframe

from .adversarial import GANLoss
from .discriminator import SRGANDiscriminator
from .pixel import CharbonnierLoss, L1Loss, MSELoss
from .vgg import VGGLoss


@srframe.hookimpl
def srframe_register(registry):
    registry.add("discriminator", "srgan", SRGANDiscriminator)
    registry.add("loss", "mse", MSELoss)
    registry.add("loss", "l1", L1Loss)
    registry.add("loss", "charbonnier", CharbonnierLoss)
    registry.add("loss", "vgg", VGGLoss)
    registry.add("loss", "adversarial", GANLoss)
