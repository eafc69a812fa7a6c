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
import statistics
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


def launch_us(call: Callable[[], object]) -> float:
    """Median time of one call launched from Python (CPU launch overhead included), L2 flushed before each."""
    from triton.testing import do_bench

    return do_bench(call, warmup=50, rep=300, return_mode="median") * 1e3


def graph_us(calls: list[Callable[[], object]], replays: int = 50) -> float:
    """Median GPU time of one call: ``calls`` (each on its own input set, together larger than L2, so
    every call reads DRAM) are captured in one CUDA graph, replayed, and the time divided among them."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up (Triton compiles, autograd allocates) outside the capture
        for _ in range(2):
            for call in calls:
                call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(replays):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(calls))
    return statistics.median(times)


def _input_sets(args, sets: int):
    return [make_case(args.batch, args.channels, args.size, args.scale, DTYPES[args.dtype], "cuda")
            for _ in range(sets)]


def _graph_times(cases, scale) -> dict[tuple[str, bool], float]:
    return {(impl, backward): graph_us([runner(impl, backward, *case, scale) for case in cases])
            for backward in (False, True) for impl in ("eager", "fused")}


def _sweep(cases, scale) -> list[str]:
    """GPU time of the fused kernels over their launch constants: paired or general kernels, tile, warps."""
    from srframe.ops import triton_kernels

    saved = triton_kernels._PAIRS, triton_kernels._TILE, triton_kernels._NUM_WARPS
    lines = []
    try:
        for pairs in (True, False):
            for tile in (1024, 2048, 4096, 8192):
                for warps in (4, 8):
                    triton_kernels._PAIRS, triton_kernels._TILE, triton_kernels._NUM_WARPS = pairs, tile, warps
                    fwd = graph_us([runner("fused", False, *case, scale) for case in cases])
                    both = graph_us([runner("fused", True, *case, scale) for case in cases])
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
    x, weight, grad = case = make_case(args.batch, args.channels, args.size, args.scale, DTYPES[args.dtype], "cuda")
    with ops.use_mode("fused"):
        assert torch.equal(op(x, weight, args.scale), eager(x, weight, args.scale)), "fused forward is wrong"
    forward_bytes = 2 * x.numel() * x.element_size() + weight.numel() * weight.element_size()
    set_bytes = 4 * x.numel() * x.element_size()  # x, output, grad, grad of x
    l2_bytes = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20)
    sets = max(4, -(-4 * l2_bytes // set_bytes))
    cases = [case, *_input_sets(args, sets - 1)]

    gpu = _graph_times(cases, args.scale)
    launched = {(impl, backward): launch_us(runner(impl, backward, *case, args.scale))
                for backward in (False, True) for impl in ("eager", "fused")}
    targets = [torch.empty_like(c[0]) for c in cases]
    copy_us = graph_us([lambda c=c, t=t: t.copy_(c[0]) for c, t in zip(cases, targets)])
    peak = peak_bandwidth(name)

    def bandwidth(us: float) -> str:
        rate = forward_bytes / (us * 1e-6)
        share = f" = {100 * rate / peak:.0f}% of {peak / 1e12:.2f} TB/s peak" if peak else " (peak unknown)"
        return f"{rate / 1e12:.2f} TB/s{share}"

    print(f"\n{name}; torch {torch.__version__}; batch {args.batch}, {args.channels} output channels, "
          f"{args.size}x{args.size} output, x{args.scale}, {args.dtype}; medians")
    if args.sweep:
        print("fused kernels, GPU time per call (CUDA graph):", *_sweep(cases, args.scale), sep="\n")
    print(f"GPU time per call (CUDA graph over {sets} input sets, so each call reads DRAM), and per call "
          f"launched from Python (do_bench, L2 flushed; CPU launch overhead included):")
    print(f"{'':18s}{'eager':>9s}{'fused':>9s}{'ratio':>8s}   {'eager':>9s}{'fused':>9s}{'ratio':>8s}")
    for backward, label in ((False, "forward"), (True, "forward+backward")):
        e, f = gpu["eager", backward], gpu["fused", backward]
        le, lf = launched["eager", backward], launched["fused", backward]
        print(f"{label:18s}{e:7.1f}us{f:7.1f}us{e / f:7.2f}x   {le:7.1f}us{lf:7.1f}us{le / lf:7.2f}x")
    print(f"fused forward moves {forward_bytes / 1e6:.1f} MB: {bandwidth(gpu['fused', False])}")
    print(f"copy_ of the same bytes (ceiling at this size): {copy_us:.1f} us, {bandwidth(copy_us)}")
    fwd_rate = forward_bytes / (gpu["fused", False] * 1e-6)
    ratio = gpu["eager", True] / gpu["fused", True]
    print(f"targets (GPU time): forward+backward >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'} ({ratio:.2f}x); "
          f"forward >= 80% of peak bandwidth: {'met' if peak and fwd_rate >= 0.8 * peak else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
