"""Inference: tiled, batched, reduced-precision upscaling of images of any size."""
