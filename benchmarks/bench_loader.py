"""Does the data loader keep up with training? HR patches per second, loader against training step.

    python benchmarks/bench_loader.py                          # T91 and BSD200 from ../shared/data/train
    python benchmarks/bench_loader.py --data /path/to/train --batches 100 --json loader.json

The loader side: ``image_folder`` datasets of 96x96 HR patches (random crops, flips and
rotations), batch 16, with 0, 1 and 2 worker processes, with the in-memory cache and reading
from disk each time; timed after the first batch (worker start-up is reported apart).

The training side: one SRResNet x4 B16 step as the engine runs it on this machine's CPU:
uint8 -> float, bicubic LR made from the HR batch, forward, MSE, backward, Adam step.

The ratio is loader patches/s over step patches/s; it must be at least 5 for the loader
never to be what training waits on. Each side is timed alone: in a real run they share the
cores, so leave some for the step (workers beyond the core count only compete with it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from pathlib import Path

import torch

import srframe
from srframe.data import ImageFolder, make_loader, to_float

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"
BATCH, PATCH, SCALE = 16, 96, 4
REQUIRED_RATIO = 5


def loader_rate(root: Path, workers: int, cached: bool, batches: int, seed: int = 0) -> dict[str, float]:
    """Patches per second from a fresh loader over ``root`` (and its start-up time)."""
    probe = ImageFolder(root, scale=SCALE, patch_size=PATCH, cache_mb=0, on_bad_file="skip")
    repeat = math.ceil((batches + 1) * BATCH / len(probe.entries))
    start = time.perf_counter()
    dataset = ImageFolder(root, scale=SCALE, patch_size=PATCH, repeat=repeat, cache_mb=2048 if cached else 0,
                          on_bad_file="skip")
    loader = make_loader(dataset, batch_size=BATCH, num_workers=workers, seed=seed)
    iterator = iter(loader)
    next(iterator)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    return {"patches_per_s": batches * BATCH / elapsed, "startup_s": startup}


def step_rate(steps: int, warmup: int = 2) -> dict[str, float]:
    """Patches per second that SRResNet x4 B16 training steps consume on the CPU."""
    generator = srframe.build("generator", "srresnet", scale=SCALE)
    degradation = srframe.build("degradation", "bicubic", scale=SCALE)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-4)
    hr_batch = torch.randint(0, 256, (BATCH, 3, PATCH, PATCH), dtype=torch.uint8)
    rng = torch.Generator().manual_seed(0)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        hr = to_float(hr_batch)
        lr = degradation(hr, rng)
        loss = torch.nn.functional.mse_loss(generator(lr), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"patches_per_s": BATCH / seconds, "step_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding T91/ and BSD200/")
    parser.add_argument("--sets", nargs="+", default=["T91", "BSD200"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=60, help="batches timed per loader configuration")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # T91's one 78x78 image is skipped with a warning

    step = step_rate(args.steps)
    print(f"SRResNet x4 B16 training step (batch {BATCH}, {PATCH}x{PATCH} HR, {torch.get_num_threads()} threads): "
          f"{step['step_s']:.2f} s/step = {step['patches_per_s']:.1f} patches/s consumed")
    print(f"\n{'set':8} {'workers':>7} {'cache':>6} {'patches/s':>10} {'start s':>8} {'x step':>7}")
    results = []
    for name in args.sets:
        for cached in (True, False):
            for workers in args.workers:
                rate = loader_rate(args.data / name, workers, cached, args.batches)
                ratio = rate["patches_per_s"] / step["patches_per_s"]
                results.append({"set": name, "workers": workers, "cache": cached, **rate, "ratio": ratio})
                print(f"{name:8} {workers:7d} {'yes' if cached else 'no':>6} {rate['patches_per_s']:10.0f} "
                      f"{rate['startup_s']:8.2f} {ratio:7.1f}")
    worst = min(results, key=lambda r: r["ratio"])
    verdict = "keeps up" if worst["ratio"] >= REQUIRED_RATIO else "TOO SLOW"
    print(f"\nslowest configuration: {worst['set']}, {worst['workers']} workers, cache {worst['cache']}: "
          f"{worst['ratio']:.1f}x what a step consumes (needs >= {REQUIRED_RATIO}x): {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"step": step, "loader": results}, indent=2))


if __name__ == "__main__":
    main()
