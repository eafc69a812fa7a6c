"""``index.html``: an evaluation report a person opens from disk, with no server and no network.

Everything it shows sits next to it (PNG files referenced by relative paths) or inside it
(the styles): the table of means, the scores of every image, the training curves when the
report belongs to a run, the side-by-side crops, and whole upscaled images.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path

from ..outputs import write_text
from .benchmark import SetResult

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
thead { background: #f3f3f3; }
td.best { font-weight: bold; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #555; }
"""


def write_html(results: list[SetResult], crops: dict[tuple[str, str], Path], out_dir: Path, scale: int, *,
               title: str, curves: Path | None = None, whole: list[tuple[str, Path]] = ()) -> Path:
    """Write ``out_dir/index.html`` (``curves`` is copied next to it); returns its path."""
    from .report import PROTOCOL

    parts = [f"<h1>{_e(title)}, x{scale}</h1>", f"<p class='note'>{_e(PROTOCOL.format(scale=scale))}</p>",
             "<h2>Results</h2>", _summary(results)]
    if curves is not None and curves.is_file():
        shutil.copyfile(curves, out_dir / "curves.png")
        parts += ["<h2>Training</h2>", _figure("curves.png", "Loss terms, learning rate and validation PSNR-Y "
                                                             "over the training steps (dotted lines: stage changes).")]
    for set_name in dict.fromkeys(r.set_name for r in results):
        parts += [f"<h2>{_e(set_name)}: image by image</h2>", _per_image([r for r in results if r.set_name == set_name])]
        for (crop_set, image_name), path in crops.items():
            if crop_set == set_name:
                parts.append(_figure(path.relative_to(out_dir).as_posix(),
                                     f"{image_name}: where the outputs differ most; left to right as labelled, "
                                     f"{path.stem} enlarged with nearest-neighbour pixels."))
    if whole:
        parts.append("<h2>Whole images</h2>")
        parts += [_figure(path.relative_to(out_dir).as_posix(), caption) for caption, path in whole]
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    index = out_dir / "index.html"
    write_text(index, page)
    return index


def _summary(results: list[SetResult]) -> str:
    rows = []
    for set_name in dict.fromkeys(r.set_name for r in results):
        group = [r for r in results if r.set_name == set_name]
        best = _best([r.summary() for r in group])
        for result in group:
            s = result.summary()
            rows.append(f"<tr><td>{_e(set_name)}</td><td>{_e(result.model_name)}</td>"
                        + "".join(_cell(s[key], best[key], fmt) for key, fmt in _METRICS) + f"<td>{s['n']}</td></tr>")
    return ("<table><thead><tr><th>set</th><th>model</th><th>PSNR-Y (dB)</th><th>SSIM-Y</th><th>LPIPS</th>"
            "<th>images</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _per_image(results: list[SetResult]) -> str:
    header = "".join(f"<th colspan='3'>{_e(r.model_name)}</th>" for r in results)
    sub = "<th>PSNR-Y</th><th>SSIM-Y</th><th>LPIPS</th>" * len(results)
    rows = []
    for index, first in enumerate(results[0].images):
        scores = [r.images[index] for r in results]
        best = _best([{"psnr_y": s.psnr_y, "ssim_y": s.ssim_y, "lpips": s.lpips} for s in scores])
        cells = "".join(_cell(getattr(s, key), best[key], fmt) for s in scores for key, fmt in _METRICS)
        rows.append(f"<tr><td>{_e(first.name)}</td>{cells}</tr>")
    return (f"<table><thead><tr><th rowspan='2'>image</th>{header}</tr><tr>{sub}</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


_METRICS = (("psnr_y", "{:.2f}"), ("ssim_y", "{:.4f}"), ("lpips", "{:.4f}"))


def _best(rows: list[dict]) -> dict[str, float | None]:
    """The best value of each metric among ``rows`` (PSNR/SSIM: highest; LPIPS: lowest)."""
    best = {}
    for key, _ in _METRICS:
        values = [row[key] for row in rows if row[key] is not None]
        best[key] = (min(values) if key == "lpips" else max(values)) if values else None
    return best


def _cell(value: float | None, best: float | None, fmt: str) -> str:
    if value is None:
        return "<td>-</td>"
    mark = " class='best'" if best is not None and value == best else ""
    return f"<td{mark}>{fmt.format(value)}</td>"


def _figure(src: str, caption: str) -> str:
    return f"<figure><img src='{_e(src)}' alt='{_e(caption)}'><figcaption>{_e(caption)}</figcaption></figure>"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
