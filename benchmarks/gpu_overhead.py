"""Where the CPU time of the fused op's forward and backward goes, on a CUDA GPU.

    PYTHONPATH=. python -m benchmarks.gpu_overhead

Prints wall time per call (200 calls back to back) of eager and fused, forward and
forward+backward, of the backward op called directly, and of the Triton wrapper alone (on the
main thread and on another, as autograd's device thread), then a cProfile of the wrapper.
On an H200 host before the eager path (srframe/ops/subpixel.py): fused forward+backward 654 us
against eager's 176 us; backward op called directly 179 us; the Triton wrapper alone 72-80 us.
"""

from __future__ import annotations

import threading
import time

import torch

from benchmarks.bench_ops import make_case, runner
from srframe import ops


def per_call_us(call, n=200):
    for _ in range(20):
        call()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        call()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    x, weight, grad = case = make_case(16, 64, 96, 2, torch.bfloat16, "cuda")
    for impl in ("eager", "fused"):
        for backward in (False, True):
            print(f"{impl:6s} backward={backward}: {per_call_us(runner(impl, backward, *case, 2)):8.1f} us per call")
    with ops.use_mode("fused"):
        direct = lambda: torch.ops.srframe.pixel_shuffle_prelu_backward.default(grad, x, weight, 2)  # noqa: E731
        print(f"backward op called directly, main thread: {per_call_us(direct):8.1f} us")
        from srframe.ops import triton_kernels
        gx = torch.empty_like(x)
        kernel = lambda: triton_kernels.shuffle_prelu_backward(grad, x, weight, 2, gx)  # noqa: E731
        print(f"triton wrapper only, main thread: {per_call_us(kernel):8.1f} us")
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("us", per_call_us(kernel)))
        thread.start()
        thread.join()
        print(f"triton wrapper only, another thread: {result['us']:8.1f} us")
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(50):
            kernel()
        torch.cuda.synchronize()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
