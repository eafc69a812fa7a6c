"""Community models: ``srframe.upscale`` of a spandrel model against the bare spandrel module, untiled.

Synthetic community checkpoints in the real key layouts (random weights, made as
tests/test_community_models.py makes them), written to a temporary folder and loaded both ways:

- ``rrdbnet``: BasicSR's RRDBNet x4, the layout of Real-ESRGAN's ``RealESRGAN_x4plus.pth``
  (``params_ema``; 64 maps, growth 32, ``--rrdb-blocks`` blocks, 23 in the published model);
- ``compact``: SRVGGNetCompact x4 at ``realesr-general-x4v3``'s size (64 maps, 32 convolutions, PReLU);
- ``span``: SPAN x4 with 48 feature channels (the NTIRE 2024 model's size), as safetensors.

Variants, each on the same NCHW float LR tensor in [0, 1] under ``torch.inference_mode``:

- ``spandrel module``: ``spandrel.ModelLoader().load_from_file(file).model(lr)``, the bare network
  (the baseline every ratio is to);
- ``spandrel descriptor``: spandrel's own call, ``descriptor(lr)`` (pads to the size rules, clamps);
- ``srframe generator``: ``model(lr)`` of the generator ``srframe.load_generator(file)`` returns
  (the ``SpandrelGenerator`` wrapping the network as ``model.net``);
- ``srframe.upscale``: ``srframe.upscale(model, lr, tile=<the image's size>)``, one tile, with its
  defaults, which on the CPU run ``optimize_for_inference`` (fold BN, fused epilogues, NNPACK for
  wide convolutions) and channels_last;
- ``upscale optimize=False``: the same without the rewrites (channels_last still on: the CPU default);
- ``upscale plain``: ``optimize=False, channels_last=False``: the network exactly as the bare
  module runs it, so the difference is the wrapper alone (input checks, tiling and blending,
  the inf/NaN checks, clamping, writing the output, the prepared-model cache and its state stamp).

The issue's acceptance: ``srframe.upscale`` untiled costs at most 3% more than the bare module.
The first ``srframe.upscale`` call prepares the model (copies and optimises it) and caches it; that
call is timed separately and not in the rounds.

pytest-benchmark suite (grouped per model; the bracketed factors are ratios to the fastest):

    python -m pytest benchmarks/bench_spandrel.py --benchmark-only
    python -m pytest benchmarks/bench_spandrel.py --benchmark-disable -q   # smoke run: each variant once

Summary with the ratio of each variant to the bare module, measured in one run with the variants
interleaved round by round (the order rotating each round, fairer on a busy machine):

    python benchmarks/bench_spandrel.py [--rounds 7] [--models rrdbnet compact span] [--rrdb-blocks 23]
    python benchmarks/bench_spandrel.py --threads 1 --clock cpu   # steadier where other work shares the CPU
    python benchmarks/bench_spandrel.py --steady-malloc            # without glibc's page-fault storms
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import srframe

# the module, not the function srframe exports under the same name (its _prepared cache and _state_stamp)
upscale_module = importlib.import_module("srframe.infer.upscale")

ACCEPTANCE = 1.03  # srframe.upscale untiled / bare spandrel module
BASE = "spandrel module"
clock = time.perf_counter  # the summary's clock; --clock cpu makes it time.process_time


# --- the checkpoints -------------------------------------------------------------------------------

def basicsr_rrdbnet(num_block: int, num_feat: int = 64, grow: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """BasicSR's RRDBNet x4 state dict (RealESRGAN_x4plus.pth's ``params_ema`` layout), random values."""
    generator = torch.Generator().manual_seed(seed)

    def conv(out: int, inp: int) -> dict[str, torch.Tensor]:
        return {"weight": torch.randn(out, inp, 3, 3, generator=generator) * 0.05,
                "bias": torch.randn(out, generator=generator) * 0.01}

    layers = {"conv_first": conv(num_feat, 3)}
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for k in range(1, 6):
                layers[f"body.{block}.rdb{rdb}.conv{k}"] = conv(num_feat if k == 5 else grow, num_feat + (k - 1) * grow)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        layers[name] = conv(num_feat, num_feat)
    layers["conv_last"] = conv(3, num_feat)
    return {f"{name}.{part}": tensor for name, tensors in layers.items() for part, tensor in tensors.items()}


def spandrel_state(architecture: str, seed: int = 0, **hyperparameters) -> dict[str, torch.Tensor]:
    """The state dict of spandrel's own module (the original project's layout), randomly initialised."""
    torch.manual_seed(seed)
    module = importlib.import_module(f"spandrel.architectures.{architecture}")
    state = getattr(module, architecture)(**hyperparameters).state_dict()
    return {name: tensor.contiguous() for name, tensor in state.items()}


COMPACT = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
SPAN = dict(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4)


@dataclass(frozen=True)
class Case:
    title: str
    file: str
    lr_size: int  # LR height and width: one call of the bare module takes ~0.2-2 s on a 2-core CPU
    write: Callable[[Path, int], None]  # (path, rrdb_blocks)


CASES = {
    "rrdbnet": Case("RRDBNet x4 (RealESRGAN_x4plus layout, {blocks} blocks)", "RealESRGAN_x4plus_synthetic.pth", 64,
                    lambda path, blocks: torch.save({"params_ema": basicsr_rrdbnet(blocks)}, path)),
    "compact": Case("Compact x4 (realesr-general-x4v3 size)", "realesr-general-x4v3_synthetic.pth", 256,
                    lambda path, blocks: torch.save({"params": spandrel_state("Compact", **COMPACT)}, path)),
    "span": Case("SPAN x4 (48 channels)", "span_x4_synthetic.safetensors", 256,
                 lambda path, blocks: save_file(spandrel_state("SPAN", **SPAN), str(path))),
}
VARIANTS = ("spandrel module", "spandrel descriptor", "srframe generator", "srframe.upscale",
            "upscale optimize=False", "upscale plain")


@dataclass
class Prepared:
    title: str
    lr: torch.Tensor
    calls: dict[str, Callable[[torch.Tensor], torch.Tensor]]
    model: torch.nn.Module  # srframe's generator that srframe.upscale runs (never called directly)
    direct: torch.nn.Module  # a second one, loaded from the same file, that "srframe generator" calls
    expected: torch.Tensor | None = None  # the bare module's output, clamped (set by the pytest fixture)


def prepare(name: str, folder: Path, rrdb_blocks: int = 23, lr_size: int | None = None) -> Prepared:
    """Write ``name``'s checkpoint into ``folder``, load it with spandrel and with srframe, and make the variants."""
    import spandrel

    case = CASES[name]
    path = folder / case.file
    case.write(path, rrdb_blocks)
    descriptor = spandrel.ModelLoader().load_from_file(path).eval()
    module = descriptor.model
    # Two srframe generators from the file: one only srframe.upscale sees, one called directly. Calling
    # a SPAN model directly under inference_mode turns its eval_conv parameters into inference tensors
    # (Conv3XC.update_params assigns .data), after which srframe.upscale can no longer tell whether
    # the model changed and prepares it again on every call; summarise() reports that separately.
    model, direct = srframe.load_generator(path), srframe.load_generator(path)
    size = lr_size or case.lr_size
    lr = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    tile = size  # one tile: the whole image, untiled

    def upscale(**settings) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: srframe.upscale(model, x, tile=tile, **settings)

    calls = {
        "spandrel module": module,
        "spandrel descriptor": descriptor,
        "srframe generator": direct,
        "srframe.upscale": upscale(),
        "upscale optimize=False": upscale(optimize=False),
        "upscale plain": upscale(optimize=False, channels_last=False),
    }
    return Prepared(case.title.format(blocks=rrdb_blocks), lr, calls, model, direct)


def _inference(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def call(lr: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fn(lr)
    return call


def _problem(exc: BaseException) -> str:
    """The exception and the innermost frame outside torch it came from, on one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    frame = next((f for f in reversed(frames) if "torch" not in Path(f.filename).parts), frames[-1])
    return f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno})"


# --- pytest-benchmark suite ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Prepared]:
    folder = tmp_path_factory.mktemp("community")
    found = {name: prepare(name, folder) for name in CASES}
    for case in found.values():
        case.expected = _inference(case.calls[BASE])(case.lr).clamp(0, 1)
    return found


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(CASES))
def test_spandrel_model_inference(benchmark, prepared, name, variant):
    found = prepared[name]
    call = _inference(found.calls[variant])
    out = call(found.lr)  # warm-up (and, for srframe.upscale, preparing the model), outside the timing
    assert (out.clamp(0, 1) - found.expected).abs().max() <= 1e-4, "a variant must give the bare module's outputs"
    benchmark.group = f"{found.title}, 1x3x{found.lr.shape[-2]}x{found.lr.shape[-1]} LR, cpu, float32"
    benchmark.pedantic(call, args=(found.lr,), rounds=5, iterations=1)


# --- interleaved summary ---------------------------------------------------------------------------

def _page_faults() -> int:
    """Minor page faults of this process so far (0 where the ``resource`` module is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def steady_malloc() -> bool:
    """glibc only: keep freed memory instead of returning it to the OS (M_TRIM_THRESHOLD) and fix the mmap
    threshold at its maximum, 32 MiB (M_MMAP_THRESHOLD), so that large tensors reuse memory rather than
    page-fault it afresh. With glibc's adaptive defaults, whether a call page-faults its activations
    depends on what ran before it in the process. False where that did not take."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt(-1, 2**31 - 1) == 1 and libc.mallopt(-3, 32 << 20) == 1
    except (OSError, AttributeError):
        return False


def _stamp_seconds(model: torch.nn.Module, repeat: int = 200) -> float:
    """What ``srframe.upscale``'s per-call state stamp (the cache key over every parameter) costs."""
    start = clock()
    for _ in range(repeat):
        upscale_module._state_stamp(model)
    return (clock() - start) / repeat


def _time_the_networks(model: torch.nn.Module, inside: list[float]) -> None:
    """Hook the networks ``srframe.upscale`` prepared for ``model`` (one per setting) so that each call
    adds the seconds spent in the network as prepared (its layout conversions included) to ``inside``."""
    for _, upscaler in upscale_module._prepared.get(model, {}).values():
        net = upscaler.model
        if getattr(net, "_bench_timed", False):
            continue
        started: list[float] = []
        net.register_forward_pre_hook(lambda module, args, started=started: started.append(clock()),
                                      prepend=True)
        net.register_forward_hook(lambda module, args, out, started=started:
                                  inside.append(clock() - started.pop()))
        net._bench_timed = True


def summarise(found: Prepared, rounds: int) -> dict[str, float]:
    """Time every variant ``rounds`` times, interleaved; print the table; return variant -> paired ratio."""
    calls = {name: _inference(fn) for name, fn in found.calls.items()}
    expected = calls[BASE](found.lr).clamp(0, 1)
    errors, failures, first = {}, {}, {}
    for name, call in list(calls.items()):  # warm-up; srframe.upscale's first call prepares the model
        start = clock()
        try:
            out = call(found.lr)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the other variants still run
            failures[name] = _problem(exc)
            del calls[name]
            continue
        first[name] = clock() - start
        errors[name] = (out.clamp(0, 1) - expected).abs().max().item()
    inside: list[float] = []
    _time_the_networks(found.model, inside)
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    faults: dict[str, list[int]] = {name: [] for name in calls}
    outside: dict[str, list[float]] = {name: [] for name in calls if "upscale" in name}
    order = list(calls)
    for index in range(rounds):
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            inside.clear()
            faulted, start = _page_faults(), clock()
            calls[name](found.lr)
            seconds[name].append(clock() - start)
            faults[name].append(_page_faults() - faulted)
            if name in outside:
                outside[name].append(seconds[name][-1] - sum(inside))
    base = seconds[BASE]
    height, width = found.lr.shape[-2:]
    print(f"\n{found.title}, 1x3x{height}x{width} LR, cpu ({torch.get_num_threads()} threads), float32, "
          f"torch {torch.__version__}, {rounds} interleaved rounds")
    print(f"{'variant':24s}{'median':>10s}{'min':>10s}{'paired':>9s}{'medians':>9s}{'mins':>8s}"
          f"{'outside net':>13s}{'first':>10s}{'faults':>9s}{'max |diff|':>11s}")
    ratios = {}
    for name in VARIANTS:
        if name in failures:
            print(f"{name:24s}  fails: {failures[name]}")
            continue
        values = seconds[name]
        median = statistics.median(values)
        ratios[name] = statistics.median(v / b for v, b in zip(values, base))  # same round, so drift cancels
        wrapper = f"{statistics.median(outside[name]) * 1e3:9.1f}ms" if name in outside else ""
        once = f"{first[name] * 1e3:8.0f}ms" if name in outside else ""
        print(f"{name:24s}{median * 1e3:8.1f}ms{min(values) * 1e3:8.1f}ms{ratios[name]:8.3f}x"
              f"{median / statistics.median(base):8.3f}x{min(values) / min(base):7.3f}x{wrapper:>13s}{once:>10s}"
              f"{statistics.median(faults[name]):9.0f}{errors[name]:11.1e}")
    stamp = _stamp_seconds(found.model)
    tensors = len(list(found.model.parameters())) + len(list(found.model.buffers()))
    print(f"Ratios to the module: paired = median over the rounds of (variant / module in the same round), medians "
          f"and mins = of the columns. outside net: the call's time minus the time in the network srframe prepared "
          f"(input check, tiling and blending, inf/NaN checks, clamping, writing the output). first: srframe.upscale's "
          f"first call, which prepares the model (copies, optimises) and caches it. faults: minor page faults per "
          f"call (median; 4 KiB pages touched for the first time). State stamp per srframe.upscale call: "
          f"{stamp * 1e6:.0f} us ({tensors} tensors).")
    if upscale_module._state_stamp(found.direct) is None:
        print(f"After model(lr) under inference_mode, this model holds inference tensors, so srframe.upscale cannot "
              f"stamp its state and prepares it again on every call, adding "
              f"{_preparing_seconds(found.direct, optimize=False) * 1e3:.1f} ms (optimize=False) or "
              f"{_preparing_seconds(found.direct) * 1e3:.1f} ms (defaults) to each call.")
    verdict = ("fails" if "srframe.upscale" not in ratios else
               "holds" if ratios["srframe.upscale"] <= ACCEPTANCE else "does not hold")
    print(f"Acceptance, srframe.upscale <= {ACCEPTANCE:.2f} x spandrel module (paired): {verdict}")
    return ratios


def _preparing_seconds(model: torch.nn.Module, repeat: int = 3, **settings) -> float:
    """What preparing ``model`` for srframe.upscale (building its Upscaler: copy, optimise) takes, median."""
    times = []
    for _ in range(repeat):
        start = clock()
        upscale_module.Upscaler(model, **settings)
        times.append(clock() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    global clock
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--rrdb-blocks", type=int, default=23, help="RRDBNet blocks (23 in RealESRGAN_x4plus)")
    parser.add_argument("--lr-size", type=int, help="LR height and width for every model (default: per model)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); on a CPU other work shares, "
                        "1 thread gives steadier ratios (threads waiting for a descheduled one inflate the times)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the process's CPU time, which leaves out the time other work on a shared CPU "
                        "keeps it waiting; use it with --threads 1 (with more, threads spinning while they wait "
                        "for each other count too)")
    parser.add_argument("--steady-malloc", action="store_true",
                        help="glibc: keep freed memory and fix the mmap threshold (see steady_malloc), so page "
                        "faults from the allocator's history do not mix into the comparison")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        clock = time.process_time
    steady = args.steady_malloc and steady_malloc()
    malloc = "steady (glibc M_TRIM_THRESHOLD and M_MMAP_THRESHOLD fixed)" if steady else "default"
    print(f"clock: {args.clock} time; {torch.get_num_threads()} torch threads; malloc: {malloc}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            summarise(prepare(name, Path(folder), args.rrdb_blocks, args.lr_size), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
