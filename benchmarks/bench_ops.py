"""Benchmarks of ``srframe.ops.pixel_shuffle_prelu``: eager ``pixel_shuffle`` + ``prelu`` against the op.

The case is the issue's: batch 16, 64 output channels, 96x96 output, upscale 2 (bfloat16 on
CUDA, float32 on the CPU, where only the reference runs unless ``TRITON_INTERPRET=1``).

pytest-benchmark suite, on any device (each GPU round synchronises, so it includes launch latency):

    python -m pytest benchmarks/bench_ops.py --benchmark-only

GPU summary, timed with CUDA events and L2 flushed before each run (``triton.testing.do_bench``),
with the forward pass's memory bandwidth; ``benchmarks/gpu_check.sh`` runs this:

    python benchmarks/bench_ops.py [--dtype bf16] [--batch 16] [--channels 64] [--size 96] [--scale 2] [--sweep]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from srframe import ops
from srframe.ops import modes

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PEAK_BANDWIDTH = [  # (name fragment, bytes/s), first match wins; datasheet figures
    ("H200", 4.8e12), ("H100 NVL", 3.9e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12), ("A100", 1.555e12),
]


def make_case(batch=16, channels=64, size=96, scale=2, dtype=torch.float32, device="cpu"):
    """Input (N, C r^2, size / r, size / r), per-channel slopes, and an output gradient."""
    generator = torch.Generator(device).manual_seed(0)
    lr = size // scale
    x = torch.randn(batch, channels * scale**2, lr, lr, generator=generator, device=device).to(dtype)
    weight = (torch.rand(channels, generator=generator, device=device) * 0.5).to(dtype)
    grad = torch.randn(batch, channels, size, size, generator=generator, device=device).to(dtype)
    return x, weight, grad


def eager(x, weight, scale):
    return F.prelu(F.pixel_shuffle(x, scale), weight)


def op(x, weight, scale):
    return ops.pixel_shuffle_prelu(x, weight, scale)


IMPLEMENTATIONS: dict[str, tuple[Callable, ops.Mode]] = {
    "eager": (eager, "reference"), "reference": (op, "reference"), "fused": (op, "fused"),
}


def runner(implementation: str, backward: bool, x, weight, grad, scale) -> Callable[[], object]:
    """A no-argument call of one implementation: forward only, or forward and backward."""
    fn, mode = IMPLEMENTATIONS[implementation]
    if not backward:
        def forward():
            with ops.use_mode(mode):
                return fn(x, weight, scale)
        return forward
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()

    def forward_backward():
        with ops.use_mode(mode):
            return torch.autograd.grad(fn(x, weight, scale), (x, weight), grad)
    return forward_backward


# --- pytest-benchmark suite ------------------------------------------------------------------------

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
def test_pixel_shuffle_prelu(benchmark, implementation, backward):
    x, weight, grad = make_case(dtype=DTYPE, device=DEVICE)
    if IMPLEMENTATIONS[implementation][1] == "fused":
        try:
            with ops.use_mode("fused"):
                modes.use_fused(x)
        except ops.OpsError as error:
            pytest.skip(str(error))
    call = runner(implementation, backward, x, weight, grad, 2)
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    benchmark.group = f"pixel_shuffle_prelu {'forward+backward' if backward else 'forward'} {DEVICE} {DTYPE}"
    benchmark(lambda: (call(), sync()))


# --- GPU summary -----------------------------------------------------------------------------------

def peak_bandwidth(name: str) -> float | None:
    return next((peak for fragment, peak in PEAK_BANDWIDTH if fragment in name), None)


def _median_ms(fn: Callable[[], object]) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=50, rep=300, return_mode="median")


def _sweep(x, weight, grad, scale) -> list[str]:
    """Time the fused kernels over their launch constants: paired or general kernels, tile, warps."""
    from srframe.ops import triton_kernels

    saved = triton_kernels._PAIRS, triton_kernels._TILE, triton_kernels._NUM_WARPS
    lines = []
    try:
        for pairs in (True, False):
            for tile in (1024, 2048, 4096, 8192):
                for warps in (4, 8):
                    triton_kernels._PAIRS, triton_kernels._TILE, triton_kernels._NUM_WARPS = pairs, tile, warps
                    fwd = _median_ms(runner("fused", False, x, weight, grad, scale)) * 1e3
                    both = _median_ms(runner("fused", True, x, weight, grad, scale)) * 1e3
                    lines.append(f"  {'paired ' if pairs else 'general'} tile {tile:5d} warps {warps}: "
                                 f"forward {fwd:6.1f} us, forward+backward {both:6.1f} us")
    finally:
        triton_kernels._PAIRS, triton_kernels._TILE, triton_kernels._NUM_WARPS = saved
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=DTYPES, default="bf16")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64, help="output channels")
    parser.add_argument("--size", type=int, default=96, help="output height and width")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--sweep", action="store_true", help="also time the kernels over tile sizes and warps")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_ops.py's summary needs a CUDA GPU; on the CPU run the pytest-benchmark suite")
        return 2
    name = torch.cuda.get_device_name()
    x, weight, grad = make_case(args.batch, args.channels, args.size, args.scale, DTYPES[args.dtype], "cuda")
    with ops.use_mode("fused"):
        assert torch.equal(op(x, weight, args.scale), eager(x, weight, args.scale)), "fused forward is wrong"

    times = {(impl, backward): _median_ms(runner(impl, backward, x, weight, grad, args.scale)) * 1e3
             for backward in (False, True) for impl in ("eager", "fused")}
    copy_target = torch.empty_like(x)
    copy_us = _median_ms(lambda: copy_target.copy_(x)) * 1e3
    forward_bytes = 2 * x.numel() * x.element_size() + weight.numel() * weight.element_size()
    peak = peak_bandwidth(name)

    def bandwidth(us: float) -> str:
        rate = forward_bytes / (us * 1e-6)
        share = f" = {100 * rate / peak:.0f}% of {peak / 1e12:.2f} TB/s peak" if peak else " (peak unknown)"
        return f"{rate / 1e12:.2f} TB/s{share}"

    fwd_ratio = times["eager", False] / times["fused", False]
    both_ratio = times["eager", True] / times["fused", True]
    print(f"\n{name}; torch {torch.__version__}; batch {args.batch}, {args.channels} output channels, "
          f"{args.size}x{args.size} output, x{args.scale}, {args.dtype}; medians, L2 flushed before each run")
    if args.sweep:
        print("fused kernel sweep:", *_sweep(x, weight, grad, args.scale), sep="\n")
    print(f"{'':18s}{'eager':>10s}{'fused':>10s}{'eager/fused':>13s}")
    print(f"{'forward':18s}{times['eager', False]:8.1f}us{times['fused', False]:8.1f}us{fwd_ratio:12.2f}x")
    print(f"{'forward+backward':18s}{times['eager', True]:8.1f}us{times['fused', True]:8.1f}us{both_ratio:12.2f}x")
    print(f"fused forward moves {forward_bytes / 1e6:.1f} MB: {bandwidth(times['fused', False])}")
    print(f"copy_ of the same bytes (ceiling at this size): {copy_us:.1f} us, {bandwidth(copy_us)}")
    print(f"targets: forward+backward >= 1.5x: {'met' if both_ratio >= 1.5 else 'NOT met'}; "
          f"forward >= 80% of peak bandwidth: "
          f"{'met' if peak and forward_bytes / (times['fused', False] * 1e-6) >= 0.8 * peak else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
