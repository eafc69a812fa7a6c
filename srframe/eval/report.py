"""Reports of an evaluation: a Markdown table, per-image JSON, side-by-side crops as PNG, and an
HTML page that shows them all (``index.html``, self-contained: no server, no network).

The crops show bicubic | each model | HR at the place where the outputs differ most from each
other, so a reader sees what the models changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..outputs import strict_json, write_text
from .benchmark import SetResult

CROP = 96  # HR pixels shown per panel, enlarged by ZOOM
ZOOM = 3
LABEL_HEIGHT = 22
LABEL_SIZE = 15  # points of the label font


def summary_table(results: list[SetResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{set name: {model name: {"psnr_y", "ssim_y", "lpips", "n", "grey"}}}``: the stable JSON contract of
    ``--json`` (``grey``: the grey-image convention the row was scored by)."""
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


def write_report(results: list[SetResult], crops: dict[tuple[str, str], Path], out_dir: Path, scale: int, *,
                 title: str = "srframe evaluation", curves: Path | None = None,
                 whole: list[tuple[str, Path]] = ()) -> Path:
    """``report.md`` and ``index.html`` (the table, per-image scores and the crops), and ``results.json``
    (means and per-image rows) in ``out_dir``. ``crops`` maps (set, image) to its comparison PNG;
    ``curves`` (training curves) and ``whole`` ((caption, PNG) of whole upscaled images) are shown too.
    Returns ``index.html``.
    """
    from .html import write_html

    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = {r.set_name: {} for r in results}
    for r in results:
        per_image[r.set_name][r.model_name] = {"summary": r.summary(), "images": r.rows()}
    write_text(out_dir / "results.json", strict_json({"scale": scale, "sets": per_image}, indent=2) + "\n")
    parts = [f"# {title}, x{scale}\n", f"{PROTOCOL.format(scale=scale)}\n", markdown_table(results)]
    for (set_name, image_name), path in crops.items():
        parts.append(f"\n### {set_name}: {image_name}\n\n![{image_name}]({path.relative_to(out_dir).as_posix()})\n")
    write_text(out_dir / "report.md", "\n".join(parts))
    return write_html(results, crops, out_dir, scale, title=title, curves=curves, whole=whole)


PROTOCOL = ("PSNR and SSIM on the Y channel (MATLAB `rgb2ycbcr`), {scale} pixels cropped at each border; LR made "
            "with the MATLAB-compatible bicubic; LPIPS v0.1 with VGG16 (lower is better).")


def most_changed_box(images: list[torch.Tensor], size: int) -> tuple[int, int, int]:
    """(top, left, size) of the size x size window where ``images`` (uint8 (C, H, W), two or more)
    differ most from each other: the largest mean standard deviation across them."""
    size = min(size, images[0].shape[-2], images[0].shape[-1])
    spread = torch.stack([image.float().mean(dim=0) for image in images]).std(dim=0)[None, None]
    stride = max(1, size // 4)
    windows = F.avg_pool2d(spread, size, stride=stride)
    row, col = divmod(int(windows.flatten().argmax()), windows.shape[-1])
    return row * stride, col * stride, size


def save_comparison(panels: list[tuple[str, torch.Tensor]], path: Path) -> Path:
    """One PNG of labelled uint8 (C, H, W) images side by side, cropped where all but the last (the HR
    image) differ most (or, with one image besides HR, where it differs from HR most), enlarged with
    nearest-neighbour pixels."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=LABEL_SIZE)
    compared = panels[:-1] if len(panels) > 2 else panels  # one output alone: where it differs from HR most
    top, left, size = most_changed_box([image for _, image in compared], CROP)
    width = size * ZOOM
    canvas = Image.new("RGB", (len(panels) * (width + 4) - 4, width + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, image) in enumerate(panels):
        crop = image[:, top:top + size, left:left + size].expand(3, -1, -1).permute(1, 2, 0).numpy()
        canvas.paste(Image.fromarray(crop).resize((width, width), Image.NEAREST), (i * (width + 4), LABEL_HEIGHT))
        draw.text((i * (width + 4) + 4, 3), label, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
