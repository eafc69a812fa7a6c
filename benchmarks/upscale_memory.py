"""Peak memory and time of upscaling a large image with SRResNet x4 B16, tiled.

    python benchmarks/upscale_memory.py --size 1024 --tile 256 --batch 1
    python benchmarks/upscale_memory.py --size 1024 --input numpy --channels 4   # RGBA, as a PNG with alpha
    python benchmarks/upscale_memory.py --size 1024 --one-tile                   # the model on one tile alone

The input is made the way ``srframe upscale`` gets it from a PNG: a numpy uint8 (H, W, C) array
(``--input numpy``, the default); ``--input tensor`` passes a float (1, C, H, W) tensor in [0, 1]
(float output), ``--input pil`` a PIL image. ``--one-tile`` runs only the model on one window of
``tile + 2 * overlap`` pixels (its activations), for comparison with the whole upscale.

Prints the peak resident memory of this process (ru_maxrss), so run each measurement in a fresh
process.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

import srframe


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _image(kind: str, size: int, channels: int):
    """A random size x size image with ``channels`` channels, as ``kind`` (numpy, pil or tensor)."""
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    if kind == "numpy":
        return array if channels > 1 else array[..., 0]
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(array if channels > 1 else array[..., 0])
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="LR side in pixels")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--input", choices=["numpy", "pil", "tensor"], default="numpy",
                        help="numpy uint8 (as srframe upscale decodes a PNG; default), PIL, or a float tensor")
    parser.add_argument("--channels", type=int, choices=[1, 2, 3, 4], default=3, help="1 grey, 2 LA, 3 RGB, 4 RGBA")
    parser.add_argument("--one-tile", action="store_true", help="run the model on one tile window only")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=4).eval()
    upscaler = srframe.Upscaler(model, tile=args.tile, overlap=args.overlap, batch_size=args.batch,
                                precision=args.precision)
    if args.one_tile:
        side = args.tile + 2 * args.overlap
        window = torch.rand(args.batch, 3, side, side)
        before = _peak_gib()
        start = time.perf_counter()
        upscaler._run(window)
        print(f"one tile window {args.batch}x3x{side}x{side}, {args.precision}: "
              f"{time.perf_counter() - start:.1f} s, peak RSS {_peak_gib():.2f} GiB (before {before:.2f} GiB)")
        return
    image = _image(args.input, args.size, args.channels)
    before = _peak_gib()
    start = time.perf_counter()
    sr = upscaler(image)
    seconds = time.perf_counter() - start
    peak = _peak_gib()
    shape = sr.size[::-1] if args.input == "pil" else tuple(sr.shape)
    dtype = sr.mode if args.input == "pil" else sr.dtype
    print(f"{args.size}x{args.size}x{args.channels} {args.input} LR -> {shape} {dtype}, tile {args.tile}, overlap "
          f"{args.overlap}, batch {args.batch}, {args.precision}: {seconds:.1f} s, peak RSS {peak:.2f} GiB "
          f"(before upscaling {before:.2f} GiB)")


if __name__ == "__main__":
    main()
