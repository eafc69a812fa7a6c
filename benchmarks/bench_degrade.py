"""Time the Kornia degradation pipelines (and their stages) on a batch of HR patches.

    python benchmarks/bench_degrade.py                      # 16 patches of 96x96, x4, on the CPU
    python benchmarks/bench_degrade.py --device cuda --batch 64 --json out.json

Each call draws new random parameters (the generator moves on), so the figures average over
the pipelines' random choices (kernel kinds, resize factors, JPEG or not); the median and the
spread are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

import srframe
from srframe_plugins.kornia_degrade import stages
from srframe_plugins.kornia_degrade.draw import Draw
from srframe_plugins.kornia_degrade.params import Blur, Jpeg, Noise


def timed(fn: Callable[[], torch.Tensor], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds per call of ``fn``, after ``warmup`` untimed calls."""
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96, help="HR patch side")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    hr = torch.rand(args.batch, 3, args.patch, args.patch, generator=generator).to(device)
    lr_side = args.patch // args.scale
    lr = torch.rand(args.batch, 3, lr_side, lr_side, generator=generator).to(device)

    def stage(fn: Callable[[torch.Tensor, Draw], torch.Tensor], x: torch.Tensor) -> Callable[[], torch.Tensor]:
        return lambda: fn(x, Draw(generator, device))

    cases = {
        name: (lambda d=srframe.build("degradation", name, scale=args.scale): d(hr, generator))
        for name in ("kornia_first_order", "kornia_second_order")
    }
    cases.update({
        "stage: blur (HR)": stage(lambda x, d: stages.blur(x, Blur(), d), hr),
        "stage: resize (HR -> LR)": stage(lambda x, d: stages.resize(x, (lr_side, lr_side), ("area", "bilinear",
                                                                                               "bicubic"), d), hr),
        "stage: noise (LR)": stage(lambda x, d: stages.add_noise(x, Noise(), d), lr),
        "stage: jpeg (LR)": stage(lambda x, d: stages.jpeg(x, Jpeg(), d), lr),
        "stage: jpeg (HR)": stage(lambda x, d: stages.jpeg(x, Jpeg(), d), hr),
    })

    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"CPU, {torch.get_num_threads()} torch threads")
    print(f"{args.batch} HR patches of {args.patch}x{args.patch}, x{args.scale}, on {machine} "
          f"(median of {args.repeats}, after {args.warmup} warm-up calls)")
    print(f"{'case':28} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'patches/s':>10}")
    results = {}
    with torch.inference_mode():
        for name, fn in cases.items():
            times = timed(fn, args.repeats, args.warmup, device)
            deciles = statistics.quantiles(times, n=10)
            median = statistics.median(times)
            results[name] = {"median_s": median, "p10_s": deciles[0], "p90_s": deciles[-1],
                             "patches_per_s": args.batch / median}
            print(f"{name:28} {median * 1e3:10.1f} {deciles[0] * 1e3:8.1f} {deciles[-1] * 1e3:8.1f} "
                  f"{args.batch / median:10.0f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, **vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
