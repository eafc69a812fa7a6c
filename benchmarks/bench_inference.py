"""SRResNet x4 (16 blocks) inference on one 128x128 LR image, end to end, under ``torch.inference_mode``.

Variants: the plain model in eager NCHW (``model.eval()``), the same in channels_last,
``srframe.ops.optimize_for_inference(model)`` (BN folded, fused epilogues, channels_last),
``srframe.upscale(model, lr)`` (which applies those itself, plus tiling and clamping), and
``torch.compile`` of the optimised model.

pytest-benchmark suite (the table's bracketed factors are ratios to the fastest):

    python -m pytest benchmarks/bench_inference.py --benchmark-only

Summary with the speed-up of the optimised model over plain eager NCHW, measured in one run with
the variants interleaved round by round (fairer on a busy machine):

    python benchmarks/bench_inference.py [--rounds 7] [--compile] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

import srframe
from srframe import ops

LR_SIZE = 128


def srresnet_x4(device: str = "cpu") -> nn.Module:
    """SRResNet x4 B16 in eval mode, with BN statistics away from the identity so folding them matters."""
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=4, num_blocks=16)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.to(device).eval()


def variants(model: nn.Module, with_compile: bool) -> dict[str, nn.Module | Callable]:
    """name -> a callable taking the NCHW LR batch."""
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    optimized = ops.optimize_for_inference(model)
    found = {
        "eager_nchw": model,
        "eager_channels_last": lambda lr: channels_last(lr.contiguous(memory_format=torch.channels_last)),
        "optimize_for_inference": optimized,
        "srframe.upscale": lambda lr: srframe.upscale(model, lr),
    }
    if with_compile:
        found["compile(optimized)"] = torch.compile(optimized)
    return found


def _synchronized(fn: Callable, device: str) -> Callable[[torch.Tensor], object]:
    def call(lr):
        with torch.inference_mode():
            out = fn(lr)
        if device == "cuda":
            torch.cuda.synchronize()
        return out
    return call


# --- pytest-benchmark suite ------------------------------------------------------------------------

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def setup():
    model = srresnet_x4(DEVICE)
    lr = torch.rand(1, 3, LR_SIZE, LR_SIZE, device=DEVICE)
    with torch.inference_mode():
        expected = model(lr)
    return variants(model, with_compile=True), lr, expected


@pytest.mark.parametrize("name", ["eager_nchw", "eager_channels_last", "optimize_for_inference", "srframe.upscale",
                                  "compile(optimized)"])
def test_srresnet_x4_inference(benchmark, setup, name):
    found, lr, expected = setup
    call = _synchronized(found[name], DEVICE)
    out = call(lr)  # warm-up (and compilation), outside the timing
    assert (out.clamp(0, 1) - expected.clamp(0, 1)).abs().max() <= 1e-4, "a variant must give the plain model's outputs"
    benchmark.group = f"SRResNet x4 B16, {LR_SIZE}x{LR_SIZE} LR, {DEVICE}, float32"
    benchmark.pedantic(call, args=(lr,), rounds=5, iterations=1)


# --- interleaved summary ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the optimised model")
    parser.add_argument("--device", default=DEVICE)
    args = parser.parse_args(argv)
    model = srresnet_x4(args.device)
    lr = torch.rand(1, 3, LR_SIZE, LR_SIZE, device=args.device)
    calls = {name: _synchronized(fn, args.device) for name, fn in variants(model, args.compile).items()}
    expected = calls["eager_nchw"](lr)
    # compared as images in [0, 1] (srframe.upscale clamps); the calls also warm up
    errors = {name: (call(lr).clamp(0, 1) - expected.clamp(0, 1)).abs().max().item() for name, call in calls.items()}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call(lr)
            seconds[name].append(time.perf_counter() - start)
    base = statistics.median(seconds["eager_nchw"])
    print(f"SRResNet x4 B16, 1x3x{LR_SIZE}x{LR_SIZE} LR, {args.device} ({torch.get_num_threads()} threads), "
          f"float32, torch {torch.__version__}, {args.rounds} interleaved rounds")
    print(f"{'variant':26s}{'median':>10s}{'min':>10s}{'speed-up':>10s}{'max |diff|':>12s}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:26s}{median * 1e3:8.1f}ms{min(values) * 1e3:8.1f}ms{base / median:9.2f}x{errors[name]:12.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
