"""srframe's components in your own PyTorch code: no recipe, no CLI, no srframe engine.

It builds three registered components by name with ``srframe.build``: an SRResNet generator,
a degradation and the Charbonnier loss. A plain PyTorch loop that this script owns then trains
the generator. Each step takes random HR crops from scikit-image's photographs, degrades them
into LR inputs on the device, runs the generator, computes the loss through a
``srframe.LossContext``, and steps the optimiser. After training the script saves the generator
(``srframe.save_component``), loads it back (``srframe.load_generator``) and upscales a photo
with it (``srframe.upscale``). It also scores the model next to the bicubic baseline on a folder
of HR PNGs that it writes (``srframe.evaluate``).

    python examples/embed.py --out runs/embed                       # a few minutes on a CPU
    python examples/embed.py --out runs/embed --device cuda --steps 2000 --num-blocks 16 --channels 64
    python examples/embed.py --out /tmp/embed --steps 30 --patch 32 --batch 4 --num-blocks 1 --channels 8

Under --out it writes generator.safetensors, chelsea_x4.png, benchmark/*.png (the HR images
scored) and summary.json (losses, scores, timings). The walk-through is docs/embedding.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

import srframe

SCALE = 4
TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field")  # training HR images
TEST_PHOTOS = ("chelsea", "coffee")  # held out: scored by srframe.evaluate


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--patch", type=int, default=64, help="HR crop size (a multiple of 4)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--num-blocks", type=int, default=8)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (cosine decay to 0)")
    p.add_argument("--degradation", choices=("bicubic", "kornia"), default="bicubic",
                   help="bicubic: the benchmark's own LR; kornia: blur, noise and JPEG (blind SR)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/embed"))
    return p.parse_args()


def random_crops(photos: list[torch.Tensor], n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` crops of uint8 (3, H, W) photos, randomly flipped: float (n, 3, size, size)."""
    crops = []
    for i, top, left, flip in torch.rand(n, 4, generator=gen).tolist():
        photo = photos[int(i * len(photos))]
        top, left = int(top * (photo.shape[1] - size + 1)), int(left * (photo.shape[2] - size + 1))
        crop = photo[:, top:top + size, left:left + size]
        crops.append(crop.flip(-1) if flip < 0.5 else crop)
    return torch.stack(crops).float() / 255


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)  # the generator's initial weights

    # 1. Components, by registered name; the parameters are checked against each one's schema first.
    G = srframe.build("generator", "srresnet", scale=SCALE, num_blocks=args.num_blocks, channels=args.channels,
                      norm="none", skip="bicubic").to(device)
    if args.degradation == "bicubic":
        degrade = srframe.build("degradation", "bicubic", scale=SCALE)
    else:
        degrade = srframe.build("degradation", "kornia_first_order", scale=SCALE, blur={"sigma": [0.2, 1.5]},
                                noise={"prob": 0.5, "sigma": [1.0, 10.0]}, jpeg={"quality": [60.0, 95.0]})
    charbonnier = srframe.build("loss", "charbonnier", eps=1e-3).to(device)

    # 2. Your own loop: the data, optimiser, schedule and logging are yours.
    photos = [torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).to(device) for name in TRAIN_PHOTOS]
    crop_gen = torch.Generator().manual_seed(args.seed)  # which crops
    degrade_gen = torch.Generator(device).manual_seed(args.seed)  # every random choice of the degradation
    optimizer = torch.optim.Adam(G.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    losses, start = [], time.perf_counter()
    G.train()
    for step in range(args.steps):
        hr = random_crops(photos, args.batch, args.patch, crop_gen)  # (N, 3, P, P) in [0, 1], on the device
        lr = degrade(hr, degrade_gen)  # (N, 3, P/4, P/4), batched, on the same device
        sr = G(lr)
        loss = charbonnier(srframe.LossContext(sr=sr, hr=hr, lr=lr, step=step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - start:6.1f} s", flush=True)
    train_seconds = time.perf_counter() - start
    G.eval()

    # 3. Save the generator with how it was built; load it back without this script's code.
    saved = srframe.save_component(G, args.out / "generator.safetensors")
    loaded = srframe.load_generator(saved)  # on the CPU, in eval mode
    print(f"saved {saved} ({loaded.srframe_built_from.params})")

    # 4. Upscale a photo (any size: the model runs tile by tile; a PIL image comes back as a PIL image).
    photo = Image.fromarray(skimage.data.chelsea())
    start = time.perf_counter()
    upscaled = srframe.upscale(loaded, photo, device=device)
    upscaled.save(args.out / "chelsea_x4.png")
    print(f"upscaled {photo.size} -> {upscaled.size} in {time.perf_counter() - start:.1f} s")

    # 5. Score it on a folder of HR PNGs (LR made with the MATLAB bicubic; PSNR/SSIM on Y, border crop 4).
    bench = args.out / "benchmark"
    bench.mkdir(exist_ok=True)
    for name in TEST_PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(bench / f"{name}.png")
    scores = {name: srframe.evaluate(model, bench, scale=SCALE).summary() for name, model in
              (("bicubic", "bicubic"), ("srresnet", G))}
    print(f"{'model':10} {'PSNR-Y':>7} {'SSIM-Y':>7}   ({bench}, {len(TEST_PHOTOS)} images, x{SCALE})")
    for name, s in scores.items():
        print(f"{name:10} {s['psnr_y']:7.2f} {s['ssim_y']:7.4f}")

    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "losses": losses, "train_seconds": train_seconds,
               "upscaled": {"path": "chelsea_x4.png", "input_size": photo.size, "output_size": upscaled.size},
               "scores": scores}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
