"""The canonical MATLAB-compatible bicubic resize (evaluation depends on it, so it is core)."""

from .bicubic import Bicubic
from .imresize import imresize

__all__ = ["Bicubic", "imresize"]
