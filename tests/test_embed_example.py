"""examples/embed.py, the embedding example (docs/embedding.md), runs end to end with tiny sizes.

It runs as a reader runs it, in a subprocess: it must train, save a loadable generator, write the
upscaled photo at 4x its size and score the model next to the bicubic baseline, with numbers
that are finite and plausible. The script's summary.json is what is checked, with its printed table.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import srframe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "embed.py"
STEPS = 40


@pytest.mark.slow
def test_embed_example_trains_saves_upscales_and_evaluates(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, str(EXAMPLE), "--steps", str(STEPS), "--patch", "32", "--batch", "4",
               "--num-blocks", "1", "--channels", "8", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    summary = json.loads((out / "summary.json").read_text())

    # training: a loss per step, all finite, lower at the end than at the untrained start
    losses = summary["losses"]
    assert len(losses) == STEPS and all(math.isfinite(x) and x > 0 for x in losses)
    assert sum(losses[-10:]) / 10 < losses[0]

    # the saved generator is rebuilt from its file alone, with the sizes asked for
    G = srframe.load_generator(out / "generator.safetensors")
    built = G.srframe_built_from
    assert (built.kind, built.name, G.scale) == ("generator", "srresnet", 4)
    assert (built.params["num_blocks"], built.params["channels"]) == (1, 8)

    # the upscaled photo: 4x the input on each side, a real image (not blank)
    width, height = summary["upscaled"]["input_size"]
    with Image.open(out / summary["upscaled"]["path"]) as image:
        assert image.size == (4 * width, 4 * height) == tuple(summary["upscaled"]["output_size"])
        assert image.mode == "RGB"
        low, high = image.convert("L").getextrema()
        assert high - low > 100

    # evaluation on the two held-out photos: plausible x4 numbers, the model near or above bicubic
    scores = summary["scores"]
    assert set(scores) == {"bicubic", "srresnet"}
    for name, s in scores.items():
        assert s["n"] == 2 and s["lpips"] is None
        assert 22 < s["psnr_y"] < 40 and 0.5 < s["ssim_y"] <= 1, (name, s)
        assert f"{name:10} {s['psnr_y']:7.2f} {s['ssim_y']:7.4f}" in done.stdout  # the printed table agrees
    assert scores["srresnet"]["psnr_y"] > scores["bicubic"]["psnr_y"] - 1  # untrained, it is far below
    assert sorted(p.name for p in (out / "benchmark").iterdir()) == ["chelsea.png", "coffee.png"]
