"""What does srframe's training loop cost over a hand-written one, and what do its switches buy?

    python benchmarks/bench_train.py                         # SRResNet and SRGAN, every variant, this machine
    python benchmarks/bench_train.py --models srresnet --variants bare eager bf16 --steps 6
    python benchmarks/bench_train.py --json train.json       # also write the figures

Throughput in HR megapixels per second (batch x patch^2 per step), the paper's settings: x4,
SRResNet B16 (batch norm, PReLU), batch 16 of 96x96 HR patches, fp32 unless the variant says.

- ``bare``: a hand-written loop over one batch kept in memory (LR made once): forward, loss,
  backward, Adam step. For SRGAN: the generator step (VGG content loss on relu5_3 of VGG16 +
  1e-3 adversarial, the discriminator frozen), then the discriminator step on the detached output.
- ``eager``: ``srframe.run`` on a recipe doing the same, end to end: sampler, patches from the
  in-memory ``samples`` set, uint8 -> float, bicubic LR made on the device, the step, reading the
  loss terms (the NaN check), metrics.jsonl. Its overhead over ``bare`` is the framework's cost.
- ``channels_last``, ``compile``, ``bf16``: the same with ``[train] channels_last = true``,
  ``compile = true`` or ``precision = "bf16"``.

Times are per step after ``--warmup`` steps (compile's first steps compile), medians over the
steps measured. The variants run one after another in this process, so their ratios come
from one run on one machine. The same script runs on a GPU unchanged (``--device auto``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import srframe
from srframe.degrade import imresize
from srframe.interfaces import LossContext
from srframe.train.log import read_metrics

BATCH, PATCH, SCALE = 16, 96, 4
VARIANTS = ("bare", "eager", "channels_last", "compile", "bf16")
SWITCHES = {"eager": [], "channels_last": ["train.channels_last=true"], "compile": ["train.compile=true"],
            "bf16": ['train.precision="bf16"']}
VGG = {"kind": "vgg", "layers": "relu5_3", "backbone": "vgg16", "rescale": True}

RECIPE = """
scale = 4
seed = 0
[generator]
kind = "srresnet"
num_blocks = 16
channels = 64
[data.train]
kind = "samples"
names = ["astronaut", "coffee", "rocket"]
patch_size = {patch}
batch_size = {batch}
num_workers = 0
[train]
device = "{device}"
log_every = 1
val_every = 0
checkpoint_every = 1000000
[[stages]]
name = "{model}"
steps = {steps}
optimizer = {{ kind = "adam", lr = 1e-4 }}
{stage}
"""
STAGES = {
    "srresnet": 'losses = [{ kind = "mse" }]',
    "srgan": 'discriminator = { kind = "srgan" }\n'
             'losses = [{ kind = "vgg", layers = "relu5_3", backbone = "vgg16", rescale = true }, '
             '{ kind = "adversarial", weight = 1e-3 }]',
}


def bare_rates(model: str, steps: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds per step of the hand-written loop."""
    torch.manual_seed(0)
    generator = srframe.build("generator", "srresnet", scale=SCALE).to(device).train()
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-4)
    hr = torch.rand(BATCH, 3, PATCH, PATCH, device=device)
    lr = imresize(hr, scale=1 / SCALE).clamp(0, 1)
    if model == "srgan":
        discriminator = srframe.build("discriminator", "srgan").to(device).train()
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
        content = srframe.build("loss", "vgg", **{k: v for k, v in VGG.items() if k != "kind"}).to(device)
    times = []
    for _ in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        if model == "srresnet":
            loss = F.mse_loss(generator(lr), hr)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            discriminator.requires_grad_(False)
            sr = generator(lr)
            fake = discriminator(sr)
            loss = content(LossContext(sr=sr, hr=hr)) + 1e-3 * F.softplus(-fake).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            discriminator.requires_grad_(True)
            d_loss = F.softplus(-discriminator(hr)).mean() + F.softplus(discriminator(sr.detach())).mean()
            d_loss.backward()
            d_optimizer.step()
            d_optimizer.zero_grad(set_to_none=True)
        loss.item()  # srframe reads its loss terms every step too
        _sync(device)
        times.append(time.perf_counter() - start)
    return times[warmup:]


def srframe_rates(model: str, variant: str, steps: int, warmup: int, device: str) -> list[float]:
    """Seconds per step of ``srframe.run``, read from the run's metrics.jsonl (one line per step)."""
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / f"bench_{model}.toml"
        recipe.write_text(RECIPE.format(patch=PATCH, batch=BATCH, device=device, model=model, steps=warmup + steps,
                                        stage=STAGES[model]))
        run = srframe.run(srframe.load_recipe(recipe, SWITCHES[variant]), run_dir=Path(folder) / "run")
        records = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    return [1 / r["steps_per_s"] for r in records[warmup:]]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=5, help="steps measured per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="steps not measured, first (default 2)")
    parser.add_argument("--device", default="auto", help='"auto" (CUDA when there is one), "cpu", "cuda"')
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else torch.device(args.device)
    megapixels = BATCH * PATCH * PATCH / 1e6
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {BATCH} x {PATCH}x{PATCH} HR, x{SCALE}")
    figures: dict[str, dict[str, float]] = {}
    for model in args.models:
        rows = {}
        for variant in args.variants:
            seconds = (bare_rates(model, args.steps, args.warmup, device) if variant == "bare"
                       else srframe_rates(model, variant, args.steps, args.warmup, str(device)))
            rows[variant] = megapixels / statistics.median(seconds)
            print(f"{model:9s} {variant:14s} {rows[variant]:8.4f} HR Mpx/s  "
                  f"({statistics.median(seconds):.3f} s/step, median of {len(seconds)})", flush=True)
        figures[model] = rows
        if "bare" in rows:
            for variant, rate in rows.items():
                if variant != "bare":
                    print(f"{model:9s} {variant:14s} {rate / rows['bare']:.3f}x bare"
                          + (f"  (overhead {100 * (1 - rate / rows['bare']):+.1f}%)" if variant == "eager" else ""))
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "batch": BATCH, "patch": PATCH,
                                         "hr_mpx_per_s": figures}, indent=2))


if __name__ == "__main__":
    main()
