"""``srframe report``: a run's report, and every image it shows loading in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

import srframe
from srframe.cli import main
from srframe.train.checkpoint import RunDir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags this machine needs: no sandbox as root, and no background networking on a closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

RECIPE = """
    scale = 2
    [generator]
    kind = "srresnet"
    num_blocks = 1
    channels = 8
    norm = "none"
    skip = "bicubic"
    [data.train]
    kind = "samples"
    names = ["coffee"]
    patch_size = 32
    batch_size = 2
    num_workers = 0
    repeat = 2
    [data.val]
    kind = "samples"
    names = ["chelsea"]
    [train]
    log_every = 2
    val_every = 0
    [[stages]]
    name = "pixel"
    steps = 3
    optimizer = { kind = "adam", lr = 1e-3 }
    losses = [{ kind = "l1" }]
    [[stages]]
    name = "sharper"
    steps = 2
    losses = [{ kind = "l1" }, { kind = "charbonnier", weight = 0.5 }]
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A two-stage run and its report (LPIPS left out: the test needs no weights)."""
    folder = tmp_path_factory.mktemp("report")
    recipe = folder / "recipe.toml"
    recipe.write_text(textwrap.dedent(RECIPE))
    run = srframe.run(recipe, run_dir=folder / "run")
    assert main(["report", str(run), "--no-lpips"]) == 0
    return run / "report"


def test_the_report_holds_every_stage_and_the_baseline(report):
    table = json.loads((report / "table.json").read_text())
    assert set(table["validation"]) == {"bicubic", "pixel", "sharper"}
    assert all(row["n"] == 1 and row["lpips"] is None for row in table["validation"].values())
    page = (report / "index.html").read_text()
    for shown in ("curves.png", "validation/chelsea.png", "validation/chelsea_x2_sharper.png"):
        assert f"src='{shown}'" in page and (report / shown).is_file()
    assert "http://" not in page and "https://" not in page  # nothing from the network
    assert "| validation | pixel |" in (report / "report.md").read_text()


def test_report_on_benchmark_folders(report, tmp_path):
    from PIL import Image

    folder = tmp_path / "Tiny"
    folder.mkdir()
    Image.new("RGB", (40, 36), (120, 30, 200)).save(folder / "a.png")
    assert main(["report", str(report.parent), "--data", str(folder), "--no-lpips", "--out", str(tmp_path / "r")]) == 0
    assert set(json.loads((tmp_path / "r" / "table.json").read_text())) == {"Tiny"}


def test_report_needs_a_finished_stage(tmp_path, capsys):
    RunDir(tmp_path).recipe.write_text(textwrap.dedent(RECIPE))  # a run directory whose first stage never ended
    assert main(["report", str(tmp_path), "--no-lpips"]) == 2
    assert "no stage of" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")
def test_every_image_of_the_report_loads_in_chromium(report, tmp_path):
    """Chromium loads the page from disk and reports, through the DOM, every image that failed to load."""
    probe = tmp_path / "probe.html"
    probe.write_text(
        "<!DOCTYPE html><html><body><iframe id='r' src='" + (report / "index.html").as_uri() + "'></iframe><script>"
        "document.getElementById('r').onload = () => {"
        "  const images = [...document.getElementById('r').contentDocument.images];"
        "  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);"
        "  document.title = JSON.stringify({count: images.length, broken: broken});"
        "};</script></body></html>")
    result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             "--allow-file-access-from-files", "--virtual-time-budget=5000", "--dump-dom",
                             probe.as_uri()], capture_output=True, text=True, timeout=120)
    title = result.stdout.split("<title>")[1].split("</title>")[0] if "<title>" in result.stdout else ""
    loaded = json.loads(title.replace("&quot;", '"'))
    assert loaded["count"] == 3 and loaded["broken"] == [], loaded  # curves, one crop, one whole image
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
                    "--window-size=1200,2000", (report / "index.html").as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
