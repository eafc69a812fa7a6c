"""`srframe upscale` never loses a user's file: outputs never replace inputs, two inputs never share
an output, existing outputs are kept or (with --overwrite) replaced and the summary says which."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import _cli_inputs
from PIL import Image

import srframe
from srframe.cli import main
from srframe.errors import DataError
from srframe.outputs import write_png


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8).eval()
    return srframe.save_component(model, tmp_path_factory.mktemp("model") / "model.safetensors")


def _image(path: Path, seed: int = 0, size=(9, 11)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _upscale(*args, model_file) -> int:
    return main(["upscale", *map(str, args), "--model", str(model_file), "--tile", "8"])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.startswith("srframe: error:"), err
    return err


def test_an_output_that_would_replace_its_input_is_refused(tmp_path, model_file, capsys):
    photo = _image(tmp_path / "a.png")
    before = _files(tmp_path)
    assert _upscale(photo, "-o", tmp_path, model_file=model_file) == 2
    err = _one_error_line(capsys)
    assert f"{photo} -> {photo} (the output would replace the input)" in err and "write to another folder" in err
    assert _files(tmp_path) == before


def test_a_folder_given_as_input_and_output_is_refused(tmp_path, model_file, capsys):
    _image(tmp_path / "in" / "a.png")
    _image(tmp_path / "in" / "b.jpg", seed=1)
    before = _files(tmp_path)
    assert _upscale(tmp_path / "in", "-o", tmp_path / "in" / ".", model_file=model_file) == 2
    assert "is the input folder" in _one_error_line(capsys)
    assert _files(tmp_path) == before


@pytest.mark.parametrize("layout", ["x.png and x.jpg", "a.png in two folders", "X.PNG and X.png"])
def test_two_inputs_never_share_an_output_and_nothing_is_written(tmp_path, model_file, capsys, layout):
    if layout == "x.png and x.jpg":
        inputs = [_image(tmp_path / "in" / "x.png").parent]
        _image(tmp_path / "in" / "x.jpg", seed=1)
        clash = ["x.png", "x.jpg"]
    elif layout == "a.png in two folders":
        inputs = [_image(tmp_path / "one" / "a.png").parent, _image(tmp_path / "two" / "a.png", seed=1).parent]
        clash = ["one/a.png", "two/a.png"]
    else:
        inputs = [_image(tmp_path / "in" / "X.PNG").parent]
        _image(tmp_path / "in" / "X.png", seed=1)
        clash = ["X.PNG", "X.png"]
    assert _upscale(*inputs, "-o", tmp_path / "out", model_file=model_file) == 2
    err = _one_error_line(capsys)
    assert "nothing upscaled: " in err and "(both written to one file)" in err, err
    assert all(name in err for name in clash) and len(err.splitlines()) == 1, err
    assert "rename the inputs that share a name" in err
    assert not list((tmp_path / "out").rglob("*.png")) if (tmp_path / "out").exists() else True


def test_the_same_file_named_twice_is_upscaled_once(tmp_path, model_file, capsys):
    photo = _image(tmp_path / "in" / "a.png")
    assert _upscale(photo, tmp_path / "in", tmp_path / "in" / ".." / "in" / "a.png", "-o", tmp_path / "out",
                    model_file=model_file) == 0
    assert "1 image(s) written" in capsys.readouterr().out
    assert sorted(_files(tmp_path / "out")) == ["a.png"]


def test_an_output_folder_inside_the_input_folder_is_not_read_again(tmp_path, model_file, capsys):
    inputs = tmp_path / "photos"
    _image(inputs / "a.png")
    _image(inputs / "nested" / "b.jpg", seed=1)
    out = inputs / "x2"
    assert _upscale(inputs, "-o", out, model_file=model_file) == 0
    assert capsys.readouterr().out.startswith(f"2 image(s) written to {out}")
    first = _files(out)
    assert sorted(first) == ["a.png", "nested/b.png"]

    assert _upscale(inputs, "-o", out, model_file=model_file) == 0  # again: the x2 folder is not an input
    said = capsys.readouterr().out
    assert said.startswith(f"0 image(s) written to {out}") and "2 existing output(s) kept" in said
    assert "--overwrite replaces them" in said
    assert _files(out) == first and not (out / "x2").exists()

    assert "2 image(s) inside the output folder left out of the inputs" in said

    assert _upscale(inputs, "-o", out, "--overwrite", model_file=model_file) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"2 image(s) written to {out}, 2 of them replacing existing files")
    assert _files(out) == first  # what was reported as written is what was written

    (out / "a.png").write_bytes(_image(tmp_path / "mine.png", seed=9).read_bytes())  # the user's own photo there
    mine = (out / "a.png").read_bytes()
    assert _upscale(inputs, "-o", out, "--overwrite", model_file=model_file) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"1 image(s) written to {out}, 1 of them replacing existing files")
    assert "1 file(s) already at output paths were not written by srframe upscale and are kept (never replaced)" in said
    assert (out / "a.png").read_bytes() == mine


def test_overwrite_never_replaces_a_photo_that_srframe_did_not_write(tmp_path, model_file, capsys):
    photos = tmp_path / "photos"
    _image(photos / "a.png")
    own = _image(photos / "sub" / "a.png", seed=4)  # the user's photo, in the folder then named as output
    before = own.read_bytes()
    assert _upscale(photos, "-o", photos / "sub", "--overwrite", model_file=model_file) == 0
    said = capsys.readouterr().out
    assert said.startswith("0 image(s) written") and "not written by srframe upscale" in said
    assert "1 image(s) inside the output folder left out of the inputs" in said
    assert own.read_bytes() == before


def test_an_input_folder_inside_the_output_folder_is_upscaled(tmp_path, model_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "sub" / "a.png")
    assert _upscale("sub", "-o", ".", model_file=model_file) == 0
    assert capsys.readouterr().out.startswith("1 image(s) written to .")
    assert (tmp_path / "a.png").is_file() and (tmp_path / "sub" / "a.png").is_file()


def test_the_outputs_record_who_wrote_them(tmp_path):
    from srframe.outputs import png_software

    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        path = write_png(np.full((4, 5, 3), top, dtype=dtype), tmp_path / f"{dtype.__name__}.png", software="me")
        assert png_software(path) == "me"
        from srframe.data.images import decode_image

        assert decode_image(path).dtype == dtype and int(decode_image(path).min()) == top
    assert png_software(_image(tmp_path / "plain.png")) is None


def test_an_existing_file_of_another_name_in_the_output_folder_is_kept_and_named(tmp_path, model_file, capsys):
    photo = _image(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    _image(out / "a.png", seed=5)
    before = _files(out)
    for extra in ([], ["--overwrite"]):
        assert _upscale(photo, "-o", out, *extra, model_file=model_file) == 0
        said = capsys.readouterr().out
        assert "1 file(s) already at output paths were not written by srframe upscale and are kept (never " \
               f"replaced), e.g. {out / 'a.png'}" in said
        assert _files(out) == before


@pytest.mark.parametrize("where", ["under a file", "under /dev/null"])
def test_an_output_folder_that_cannot_be_created_is_one_line_before_any_work(tmp_path, model_file, capsys, where):
    photo = _image(tmp_path / "a.png")
    out = photo / "sub" if where == "under a file" else Path("/dev/null/sub")
    assert _upscale(photo, "-o", out, model_file=model_file) == 2
    assert "cannot write to the output folder (-o)" in _one_error_line(capsys)


def test_a_png_is_written_whole_or_not_at_all(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"before")
    with pytest.raises(TypeError):
        write_png(np.zeros((4, 4, 3), dtype=np.complex64), target)  # Pillow cannot encode it
    assert target.read_bytes() == b"before" and [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with pytest.raises(DataError, match="cannot write .*a.png"):
        write_png(np.zeros((4, 4, 3), dtype=np.uint8), tmp_path / "a.png" / "a.png")


def test_the_input_guard_of_the_cli_tests_sees_what_a_command_reads(tmp_path):
    photo = _image(tmp_path / "in" / "a.png")
    _image(tmp_path / "in" / "out" / "old.png")
    read = _cli_inputs(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "in" / "out"), "--model", str(photo)])
    assert sorted(read) == [photo, photo]  # the folder's image and the --model file; not the output folder's


def test_sigterm_stops_an_upscale_like_ctrl_c_and_leaves_no_half_file(tmp_path, model_file):
    import subprocess
    import sys
    import time

    big = _image(tmp_path / "in" / "big.png", size=(800, 800))
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "srframe.cli", "upscale", str(big), "-o", str(out), "--model",
                              str(model_file), "--tile", "32"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:  # the output folder is made just before the work
        time.sleep(0.05)
    time.sleep(0.5)
    child.terminate()
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "srframe: interrupted" in err
    assert not [p for p in out.iterdir()] if out.exists() else True  # no half-written or temporary file
