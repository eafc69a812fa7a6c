"""Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al., ICCVW 2021, Section 3.3).

The network of ``UNetDiscriminatorSN`` in xinntao/Real-ESRGAN ``realesrgan/archs/discriminator_arch.py``
(the same class is in BasicSR ``basicsr/archs/discriminator_arch.py``), layer for layer and with
its state-dict names, so the published ``RealESRGAN_x4plus_netD.pth`` (its ``params``) loads
into it with ``load_state_dict``:

- ``conv0``: 3x3 conv, ``num_in_ch`` -> F maps (F = ``num_feat``), with bias, no spectral norm;
- encoder ``conv1``..``conv3``: 4x4 conv, stride 2, to 2F, 4F, 8F maps;
- decoder ``conv4``..``conv6``: bilinear x2 upsampling (``align_corners=False``), then a 3x3 conv
  to 4F, 2F, F maps; with ``skip_connection`` the encoder map of the same size is added after
  each of them (U-Net skips by addition);
- ``conv7``, ``conv8``: 3x3 conv, F -> F;
- ``conv9``: 3x3 conv to 1 map, with bias, no spectral norm: a logit per pixel.

``conv1``..``conv8`` have no bias and carry ``torch.nn.utils.spectral_norm`` (one power
iteration per forward in training mode; state-dict keys ``weight_orig``, ``weight_u``,
``weight_v``). Every conv but ``conv9`` is followed by LeakyReLU(0.2).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from srframe.errors import DataError
from srframe.interfaces import Discriminator
from srframe.schema import Range

DOWNSAMPLING = 8  # three stride-2 convolutions: the sides must be multiples of 2^3


class UNetDiscriminatorSN(Discriminator):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al., ICCVW 2021): a real/fake
    logit for every pixel, ``(N, C, H, W) -> (N, 1, H, W)``; the adversarial loss averages them.

    Three stride-2 convolutions down, three bilinear x2 upsamplings back up, skip connections added
    between encoder and decoder, then two convolutions and a 1-map output; spectral norm on every
    convolution but the first and the last. Layer for layer ``UNetDiscriminatorSN`` of
    xinntao/Real-ESRGAN (and BasicSR), with its state-dict names (``conv0`` .. ``conv9``; SN's
    ``weight_orig``/``weight_u``/``weight_v``), so a published Real-ESRGAN discriminator
    (``RealESRGAN_x4plus_netD.pth``, its ``params``) loads into it.

    H and W must be multiples of 8 (HR patch sizes such as 256, the paper's, or 96, 128, 192);
    another size raises ``DataError`` naming it.

    Keys: ``num_in_ch``, image channels (3); ``num_feat``, the maps of the first and last
    convolutions (64; the encoder goes to 2x, 4x, 8x that); ``skip_connection``, add the encoder's
    maps to the decoder's (true, as Real-ESRGAN trains it).
    """

    def __init__(self, num_in_ch: Annotated[int, Range(min=1)] = 3, num_feat: Annotated[int, Range(min=1)] = 64,
                 skip_connection: bool = True):
        super().__init__()
        self.skip_connection = skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, kernel_size=3, stride=1, padding=1)
        # encoder
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        # decoder
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        # extra convolutions
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        height, width = img.shape[-2:]
        if height % DOWNSAMPLING or width % DOWNSAMPLING:
            side = height if height % DOWNSAMPLING else width
            raise DataError(
                f"the unet discriminator takes images whose height and width are multiples of {DOWNSAMPLING} (it "
                f"halves them three times and doubles them back), got {height}x{width}: choose an HR patch_size "
                f"that is a multiple of {DOWNSAMPLING} (e.g. {max(DOWNSAMPLING, side - side % DOWNSAMPLING)})")
        act = self._act
        x0 = act(self.conv0(img))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))

        x4 = act(self.conv4(_up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(_up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(_up(x5)))
        if self.skip_connection:
            x6 = x6 + x0

        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, negative_slope=0.2, inplace=True)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
