"""srframe's own components (bicubic degradation, datasets), announced by the entry point ``core``
exactly as a plugin announces its own, so they load lazily with the rest."""

from .plugins import hookimpl


@hookimpl
def srframe_register(registry):
    from .data.datasets import ImageFolder, PairedFolder, Samples
    from .degrade import Bicubic

    registry.add("degradation", "bicubic", Bicubic)
    registry.add("dataset", "image_folder", ImageFolder)
    registry.add("dataset", "paired_folder", PairedFolder)
    registry.add("dataset", "samples", Samples)
