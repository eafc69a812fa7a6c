"""Peak memory and time of upscaling a large image with SRResNet x4 B16, tiled.

    python benchmarks/upscale_memory.py --size 1024 --tile 256 --batch 1

Prints the peak resident memory of this process (ru_maxrss), so run it in a fresh process.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

import srframe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="LR side in pixels")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=4).eval()
    lr = torch.rand(1, 3, args.size, args.size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    sr = srframe.upscale(model, lr, tile=args.tile, overlap=args.overlap, batch_size=args.batch)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.size}x{args.size} LR -> {tuple(sr.shape[-2:])}, tile {args.tile}, overlap {args.overlap}, "
          f"batch {args.batch}: {seconds:.1f} s, peak RSS {peak:.2f} GiB (before upscaling {before:.2f} GiB)")


if __name__ == "__main__":
    main()
