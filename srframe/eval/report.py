"""Reports of an evaluation: a Markdown table, per-image JSON, and side-by-side crops as PNG.

The crops show bicubic | SR | HR at the place where SR differs most from bicubic, so a reader
sees what the model changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .benchmark import SetResult

CROP = 96  # HR pixels shown per panel, enlarged by ZOOM
ZOOM = 3
LABEL_HEIGHT = 18


def summary_table(results: list[SetResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{set name: {model name: {"psnr_y", "ssim_y", "lpips", "n"}}}``: the stable JSON contract of ``--json``."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for result in results:
        table.setdefault(result.set_name, {})[result.model_name] = result.summary()
    return table


def markdown_table(results: list[SetResult]) -> str:
    lines = ["| set | model | PSNR-Y (dB) | SSIM-Y | LPIPS | images |", "|---|---|---:|---:|---:|---:|"]
    for set_name, models in summary_table(results).items():
        for model_name, s in models.items():
            lpips = f"{s['lpips']:.4f}" if s["lpips"] is not None else "-"
            lines.append(f"| {set_name} | {model_name} | {s['psnr_y']:.2f} | {s['ssim_y']:.4f} | {lpips} | {s['n']} |")
    return "\n".join(lines) + "\n"


def write_report(results: list[SetResult], crops: dict[tuple[str, str], list[Path]], out_dir: Path,
                 scale: int) -> Path:
    """``report.md`` (table and crops) and ``results.json`` (means and per-image rows) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = {r.set_name: {} for r in results}
    for r in results:
        per_image[r.set_name][r.model_name] = {"summary": r.summary(), "images": r.rows()}
    (out_dir / "results.json").write_text(json.dumps({"scale": scale, "sets": per_image}, indent=2), encoding="utf-8")
    parts = [f"# srframe evaluation, x{scale}\n", "PSNR and SSIM on the Y channel (MATLAB `rgb2ycbcr`), "
             f"{scale} pixels cropped at each border; LR made with the MATLAB-compatible bicubic.\n",
             markdown_table(results)]
    for (set_name, model_name), paths in crops.items():
        parts.append(f"\n## {set_name}: {model_name}\n\nbicubic | {model_name} | HR, where they differ most\n")
        parts += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})\n" for p in paths]
    report = out_dir / "report.md"
    report.write_text("\n".join(parts), encoding="utf-8")
    return report


def most_changed_box(sr: torch.Tensor, bicubic: torch.Tensor, size: int) -> tuple[int, int, int]:
    """(top, left, size) of the size x size window where SR and bicubic differ most (uint8 (C, H, W) inputs)."""
    size = min(size, sr.shape[-2], sr.shape[-1])
    difference = (sr.float() - bicubic.float()).abs().mean(dim=0, keepdim=True).unsqueeze(0)
    windows = F.avg_pool2d(difference, size, stride=max(1, size // 4))
    index = int(windows.flatten().argmax())
    row, col = divmod(index, windows.shape[-1])
    stride = max(1, size // 4)
    return row * stride, col * stride, size


def save_comparison(bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, labels: tuple[str, str, str],
                    path: Path) -> Path:
    """One PNG: the three uint8 (C, H, W) images cropped where SR and bicubic differ most, side by side, labelled."""
    from PIL import Image, ImageDraw

    top, left, size = most_changed_box(sr, bicubic, CROP)
    panels = []
    for image in (bicubic, sr, hr):
        crop = image[:, top:top + size, left:left + size].expand(3, -1, -1).permute(1, 2, 0).numpy()
        panels.append(Image.fromarray(crop).resize((size * ZOOM, size * ZOOM), Image.NEAREST))
    width = size * ZOOM
    canvas = Image.new("RGB", (3 * width + 8, width + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels)):
        canvas.paste(panel, (i * (width + 4), LABEL_HEIGHT))
        draw.text((i * (width + 4) + 4, 3), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
