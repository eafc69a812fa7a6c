"""Image I/O, datasets (HR-only, paired, built-in samples), patch sampling and loaders (sharded, resumable)."""

from .datasets import ImageFolder, PairedFolder, Samples, SRDataset
from .images import ImageInfo, from_array, probe_image, read_image, to_float
from .loader import SeededSampler, SRLoader, loader_from_spec, make_loader

__all__ = ["ImageFolder", "ImageInfo", "PairedFolder", "SRDataset", "SRLoader", "Samples", "SeededSampler",
           "from_array", "loader_from_spec", "make_loader", "probe_image", "read_image", "to_float"]
