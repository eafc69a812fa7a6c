"""``srframe eval``: the JSON contract, the report a person opens, and LPIPS left out cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import srframe
from srframe.cli import main

SET5 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark" / "x4_canonical" / "Set5"
needs_set5 = pytest.mark.skipif(not SET5.is_dir(), reason=f"benchmark set not found at {SET5}")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with a small x4 generator that starts out as the bicubic upsampling."""
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=4, num_blocks=1, channels=8, norm="none", skip="bicubic")
    with torch.no_grad():
        model.tail.weight.mul_(0.1)
    run = tmp_path_factory.mktemp("runs") / "tiny_x4"
    srframe.save_component(model, run / "generator.safetensors")
    return run


def test_a_scale_the_model_does_not_have_is_refused_by_name(run_dir, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (24, 24)).save(tmp_path / "one.png")
    assert main(["eval", str(run_dir), "--data", str(tmp_path), "--scale", "3", "--no-lpips"]) == 2
    assert "model tiny_x4 upscales x4, but the evaluation asks for x3 (--scale)" in capsys.readouterr().err


@needs_set5
def test_json_table_report_and_crops(run_dir, tmp_path, capsys):
    table_file, out = tmp_path / "table.json", tmp_path / "report"
    assert main(["eval", str(run_dir), "--data", str(SET5), "--json", str(table_file), "--out", str(out),
                 "--no-lpips", "--save-images"]) == 0
    printed = capsys.readouterr().out
    assert "| Set5 | bicubic | 28.43 |" in printed and "| Set5 | tiny_x4 |" in printed

    table = json.loads(table_file.read_text())
    assert set(table) == {"Set5"} and set(table["Set5"]) == {"bicubic", "tiny_x4"}
    for row in table["Set5"].values():
        assert set(row) == {"psnr_y", "ssim_y", "lpips", "n", "grey"} and row["n"] == 5 and row["lpips"] is None
        assert row["grey"] == "intensity"
    assert table["Set5"]["bicubic"]["psnr_y"] == pytest.approx(28.42, abs=0.02)
    assert 20 < table["Set5"]["tiny_x4"]["psnr_y"] < 35

    details = json.loads((out / "results.json").read_text())
    names = [row["name"] for row in details["sets"]["Set5"]["tiny_x4"]["images"]]
    assert names == ["baby", "bird", "butterfly", "head", "woman"]
    report, page = (out / "report.md").read_text(), (out / "index.html").read_text()
    crops = sorted((out / "Set5").glob("*.png"))
    assert [c.stem for c in crops] == names
    assert all(f"]({c.relative_to(out).as_posix()})" in report and f"src='{c.relative_to(out).as_posix()}'" in page
               for c in crops)
    with Image.open(crops[0]) as crop:
        assert crop.width > 2.9 * crop.height * 0.8  # three panels side by side: bicubic | tiny_x4 | HR
    assert len(list((out / "Set5" / "tiny_x4" / "sr").glob("*.png"))) == 5


@needs_set5
def test_lpips_unavailable_leaves_it_out_and_keeps_the_rest(run_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SRFRAME_OFFLINE", "1")
    monkeypatch.setenv("SRFRAME_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    table_file = tmp_path / "table.json"
    assert main(["eval", str(run_dir), "--data", str(SET5), "--json", str(table_file)]) == 0
    assert "LPIPS is left out, the other metrics still run (--no-lpips skips it without this warning): no ImageNet weights for vgg16" in caplog.text
    assert json.loads(table_file.read_text())["Set5"]["tiny_x4"]["lpips"] is None


@needs_set5
def test_evaluate_from_python_with_lpips(run_dir):
    from srframe.errors import WeightsError
    from srframe.eval.lpips import LPIPS

    try:
        lpips = LPIPS().eval()
    except WeightsError as exc:
        pytest.skip(f"LPIPS weights unavailable: {str(exc).splitlines()[0]}")
    result = srframe.evaluate(srframe.load_generator(run_dir), SET5, scale=4, lpips=lpips)
    summary = result.summary()
    assert summary["n"] == 5 and 0 < summary["lpips"] < 1
    with pytest.raises(ValueError, match="upscales x4, but the evaluation asks for x2"):
        srframe.evaluate(srframe.load_generator(run_dir), SET5, scale=2)


def test_hr_folders_are_cropped_to_a_multiple_of_the_scale_and_pairs_are_checked(tmp_path):
    import numpy as np

    from srframe.errors import DataError
    from srframe.eval.benchmark import load_benchmark

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 37, 3), dtype=np.uint8)).save(tmp_path / "odd.png")
    Image.fromarray(rng.integers(0, 256, (21, 22), dtype=np.uint8)).save(tmp_path / "grey.png")
    images = {image.name: image for image in load_benchmark(tmp_path, 4)}
    assert images["odd"].hr.shape == (3, 48, 36) and images["odd"].lr.shape == (3, 12, 9)
    assert images["grey"].hr.shape == (1, 20, 20) and images["grey"].lr.shape == (1, 5, 5)

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(pairs / "a_HR.png")
    Image.fromarray(rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)).save(pairs / "a_LRx4.png")
    with pytest.raises(DataError, match="a_LRx4.png does not pair with .*a_HR.png at x4: it has 4x5 pixels, not 6x6"):
        load_benchmark(pairs, 4)
