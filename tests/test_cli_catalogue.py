"""A catalogue of bad command lines: each ends with exit code 2 and one line that names the problem,
before any long work, and never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srframe
from srframe.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny x2 model, a benchmark folder, a corrupt image, a recipe: what the bad command lines point at."""
    root = tmp_path_factory.mktemp("catalogue")
    torch.manual_seed(0)
    srframe.save_component(srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8).eval(),
                           root / "x2.safetensors")
    rng = np.random.default_rng(0)
    (root / "set").mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 30, 3), dtype=np.uint8)).save(root / "set" / f"{name}.png")
    (root / "tiny").mkdir()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "tiny" / "small.png")
    (root / "empty").mkdir()
    (root / "pairs").mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "pairs" / "y_HR.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "pairs" / "y_LRx4.png")
    (root / "pairs_and_more").mkdir()
    for name in ("y_HR.png", "y_LRx4.png"):
        (root / "pairs_and_more" / name).write_bytes((root / "pairs" / name).read_bytes())
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "pairs_and_more" / "z.png")
    (root / "twins").mkdir()
    for suffix in (".png", ".bmp"):
        Image.fromarray(rng.integers(0, 256, (32, 30, 3), dtype=np.uint8)).save(root / "twins" / f"x{suffix}")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (root / "not_a_model.safetensors").write_bytes(b"not safetensors at all")
    (root / "photo.png").write_bytes((root / "set" / "a.png").read_bytes())
    (root / "good.toml").write_bytes((Path(__file__).parents[1] / "recipes" / "quickstart_x4.toml").read_bytes())
    (root / "a_file").write_text("x", encoding="utf-8")
    return root


# (command line with {root} for the fixture's folder, text the one line must contain)
CATALOGUE = [
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/x2.safetensors --tile 0", "tile must be >= 1"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/x2.safetensors --tile -5", "tile must be >= 1"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/x2.safetensors --overlap -1", "overlap >= 0"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/x2.safetensors --batch 0", "batch_size must be >= 1"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/x2.safetensors --precision fp64", "invalid choice: 'fp64'"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/x2.safetensors --tile x", "invalid int value: 'x'"),
    ("upscale {root}/photo.png -o {root}/a_file --model {root}/x2.safetensors", "is a file: -o names the folder"),
    ("upscale {root}/photo.png -o {root}/a_file/sub --model {root}/x2.safetensors", "cannot write to the output folder"),
    ("upscale {root}/photo.png -o /dev/null/sub --model {root}/x2.safetensors", "cannot write to the output folder"),
    ("upscale {root}/photo.png -o {root} --model {root}/x2.safetensors", "the output would replace the input"),
    ("upscale {root}/nope.png -o {root}/o1 --model {root}/x2.safetensors", "nope.png: no such file or folder"),
    ("upscale {root}/empty -o {root}/o1 --model {root}/x2.safetensors", "empty: no image files"),
    ("upscale {root}/corrupt.png -o {root}/o2 --model {root}/x2.safetensors", "corrupt.png: not an image file"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/nope", "no such file or run directory"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/not_a_model.safetensors", "not_a_model.safetensors"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/photo.png", "photo.png"),
    ("upscale {root}/photo.png -o {root}/o1", "the following arguments are required: --model"),
    ("upscale {root}/photo.png -o {root}/o1 --model {root}/x2.safetensors --device gpu", "device must be a torch device"),
    ("eval {root}/x2.safetensors --data {root}/set --no-lpips --device tpu:0", "device must be a torch device"),
    ("eval --data {root}/set --scale -2 --no-lpips", "scale must be >= 1"),
    ("eval --data {root}/set --scale 0 --no-lpips", "scale must be >= 1"),
    ("eval {root}/x2.safetensors --data {root}/set --scale 0 --no-lpips", "scale must be >= 1 (the upscaling factor), got 0"),
    ("eval {root}/x2.safetensors --data {root}/set --scale 3 --no-lpips", "upscales x2, but the evaluation asks for x3"),
    ("eval --data {root}/set --no-lpips", "give --scale, or a model to take it from"),
    ("eval --data {root}/set --scale 2 --no-lpips --json {root}/set", "--json {root}/set is a folder"),
    ("eval --data {root}/set --scale 2 --no-lpips --json {root}/set/a.png", "is inside the benchmark folder"),
    ("eval --data {root}/set --scale 2 --no-lpips --json {root}/set/t.json", "is inside the benchmark folder"),
    ("eval --data {root}/set --scale 2 --no-lpips --device meta", "upscaling runs on 'cpu', 'cuda'"),
    ("eval {root}/x2.safetensors --data {root}/set --no-lpips --device meta", "upscaling runs on 'cpu', 'cuda'"),
    ("eval --data {root}/set --scale 2 --no-lpips --json /dev/null/x.json", "the folder of --json /dev/null is a file"),
    ("eval --data {root}/set --scale 2 --no-lpips -o {root}", "would write the report into the benchmark folder"),
    ("eval --data {root}/set --scale 2 --no-lpips -o {root}/a_file", "is a file; give a folder"),
    ("eval --data {root}/set --scale 2 --no-lpips -o {root}/set/report", "is inside the benchmark folder"),
    ("eval --data {root}/tiny --scale 4 --no-lpips", "small.png: 16x16 pixels is too small to score at x4"),
    ("eval --data {root}/empty --scale 2 --no-lpips", "in this folder; a benchmark set is the images directly"),
    ("eval --data {root}/pairs --scale 2 --no-lpips", "no LR image at x2 (LR scales found: x4)"),
    ("eval --data {root}/pairs_and_more --scale 4 --no-lpips", "and images that are neither: z.png"),
    ("eval --data {root}/twins --scale 2 --no-lpips", "images must have distinct names without their suffix: x.bmp, x.png"),
    ("eval --data {root}/nope --scale 2 --no-lpips", "nope: no such folder"),
    ("eval --data {root}/set --scale 2 --no-lpips --save-images", "--save-images needs --out"),
    ("eval {root}/x2.safetensors {root}/x2.safetensors --data {root}/set --no-lpips", "distinct names"),
    ("eval {root}/x2.safetensors --data {root}/set --no-lpips --tile 0", "tile must be >= 1"),
    ("eval --data {root}/set {root}/set --scale 2 --no-lpips", "distinct folder names: set given more than once"),
    ("report {root}/nope", "nope: no such folder"),
    ("recipe check {root}/nope.toml", "recipe file not found"),
    ("recipe check {root}/good.toml --set generator.kind=\"nope\"", "nope"),
    ("recipe check {root}/good.toml --set stages[0].optimizer.kind=\"fusedadam\"", "cannot be used here"),
    ("run {root}/nope.toml", "recipe file not found"),
    ("frobnicate", "invalid choice: 'frobnicate'"),
    ("weights fetch vgg11", "invalid choice: 'vgg11'"),
]


@pytest.mark.parametrize("line, says", CATALOGUE, ids=[line.split(" --model")[0][:60] for line, _ in CATALOGUE])
def test_a_bad_command_line_is_one_line_and_exit_code_2(world, capsys, line, says):
    argv = line.format(root=world).split()
    with pytest.raises(SystemExit) if any(_is_usage_error(line)) else _nothing() as raised:
        code = main(argv)
    if raised is not None:
        code = raised.value.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.endswith("\n"), repr(err)
    assert err.startswith(("srframe: error:", "srframe ")) and "error:" in err, err
    assert says.format(root=world) in err, err
    assert not list(world.glob("o1/*.png")) and not list(world.glob("o2/*.png"))


def _is_usage_error(line: str):
    yield any(word in line for word in ("fp64", "--tile x", "frobnicate", "vgg11")) or "--model" not in line \
        and line.startswith("upscale")


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_global_options_work_after_the_command_too(world, capsys, monkeypatch):
    from srframe.plugins import host

    disabled = []
    monkeypatch.setattr(host, "disable", lambda *names: disabled.extend(names))
    with pytest.raises(Exception, match="recipe file not found"):  # --debug: the exception itself, not one line
        main(["--disable-plugin", "a", "recipe", "check", str(world / "nope.toml"), "--debug",
              "--disable-plugin", "b"])
    assert disabled == ["a", "b"]
    assert main(["recipe", "check", str(world / "nope.toml"), "-v"]) == 2


def test_a_recipe_with_a_byte_order_mark_reads_as_without(tmp_path, capsys):
    text = (Path(__file__).parents[1] / "recipes" / "quickstart_x4.toml").read_text(encoding="utf-8")
    recipe = tmp_path / "bom.toml"
    recipe.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    (tmp_path / "plain.toml").write_text(text, encoding="utf-8")
    assert main(["recipe", "show", str(recipe)]) == 0
    with_bom = capsys.readouterr().out
    assert main(["recipe", "show", str(tmp_path / "plain.toml")]) == 0
    assert capsys.readouterr().out == with_bom
