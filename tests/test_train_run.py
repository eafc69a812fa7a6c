"""`srframe run` end to end: the run directory it leaves, and what it refuses (an existing run
directory, a recipe changed on resume, missing weights, a NaN loss, a checkpoint it cannot write)."""

from __future__ import annotations

import json
import shutil
import time
import tomllib

import pytest
import torch
from safetensors.torch import load_file

import srframe
from srframe.cli import main
from srframe.errors import CheckpointError, TrainingError, WeightsError

import train_helpers as h
from train_helpers import one_thread, plugin, val_folder  # noqa: F401  (fixtures)

LOSS_TERMS = {"pixel": {"mse", "total"},
              "gan": {"l1", "adversarial", "total", "d_adversarial", "d_total", "d_real", "d_fake"}}


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory, val_folder):
    """The tiny recipe (an MSE stage of 4 steps, then an SRGAN stage of 4) trained by `srframe run` in a
    subprocess: ``(recipe, run_dir, completed process)``."""
    tmp = tmp_path_factory.mktemp("two_stage")
    recipe = h.write_recipe(tmp / "tiny.toml", h.recipe_data(
        [h.pixel_stage("pixel", 4), h.gan_stage("gan", 4)], val=val_folder,
        train={"log_every": 2, "val_every": 3, "checkpoint_every": 3, "keep_checkpoints": 2}))
    run_dir = tmp / "run"
    started = time.monotonic()
    result = h.srframe_cli("run", recipe, "--run-dir", run_dir, cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60  # the whole command, interpreter start-up included (about 6 s here)
    return recipe, run_dir, result


def test_a_two_stage_run_leaves_the_run_directory_layout(two_stage_run):
    recipe, run_dir, result = two_stage_run
    assert f"run directory: {run_dir}" in result.stdout
    files = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    # checkpoints every 3 steps and at each stage's end (4, 8); the newest 2 are kept, and each stage's best
    steps = h.checkpoint_steps(run_dir)
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert set(best) == {"pixel", "gan"} and all(entry["metric"] == "psnr_y" for entry in best.values())
    assert set(steps) == {6, 8} | {entry["step"] for entry in best.values()}
    expected = {"recipe.toml", "environment.json", "metrics.jsonl", "curves.png", "generator.safetensors",
                "checkpoints/best.json", "stages/pixel/generator.safetensors", "stages/gan/generator.safetensors"}
    for step in steps:
        folder = f"checkpoints/{step:08d}"
        expected |= {f"{folder}/generator.safetensors", f"{folder}/state.pt"}
        if step > 4:  # the adversarial stage's checkpoints hold its discriminator
            expected.add(f"{folder}/discriminator.safetensors")
    assert files == expected
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    resolved = tomllib.loads((run_dir / "recipe.toml").read_text())
    assert resolved["generator"]["channels"] == 8 and [s["name"] for s in resolved["stages"]] == ["pixel", "gan"]
    environment = json.loads((run_dir / "environment.json").read_text())
    (start,) = environment["starts"]
    assert start["processes"] == 1 and start["resumed_from"] is None and start["versions"]["torch"] == torch.__version__


def test_metrics_hold_train_and_val_records(two_stage_run):
    _, run_dir, _ = two_stage_run
    records = h.metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    assert [(r["step"], r["stage"], r["stage_step"]) for r in train] == [
        (2, "pixel", 2), (4, "pixel", 4), (6, "gan", 2), (8, "gan", 4)]
    for record in train:
        assert LOSS_TERMS[record["stage"]] <= set(record)
        assert record["lr"] == 1e-4 and record["time"] > 0
        assert all(isinstance(record[t], float) for t in LOSS_TERMS[record["stage"]])
    assert all(b["time"] >= a["time"] for a, b in zip(train, train[1:]))
    val = [r for r in records if r["kind"] == "val"]
    # every val_every = 3 steps, and at the end of each stage
    assert [(r["step"], r["stage"]) for r in val] == [(3, "pixel"), (4, "pixel"), (6, "gan"), (8, "gan")]
    for record in val:
        assert record["n"] == 2 and record["psnr_y"] > 0 and 0 < record["ssim_y"] <= 1 and record["lpips"] is None
    assert val[0]["best"] is True and val[2]["best"] is True  # each stage's first validation is its best so far


def test_the_run_directory_loads_as_a_generator(two_stage_run):
    _, run_dir, _ = two_stage_run
    generator = srframe.load_generator(run_dir)
    assert not generator.training and generator.scale == 4
    final = load_file(str(run_dir / "generator.safetensors"))
    assert final.keys() == generator.state_dict().keys()
    assert all(torch.equal(final[k], v) for k, v in generator.state_dict().items())
    # the last stage's generator is the run's; a checkpoint folder loads too
    last = load_file(str(run_dir / "stages" / "gan" / "generator.safetensors"))
    assert all(torch.equal(last[k], final[k]) for k in final)
    last_checkpoint = run_dir / "checkpoints" / f"{max(h.checkpoint_steps(run_dir)):08d}"
    from_checkpoint = srframe.load_generator(last_checkpoint)
    assert all(torch.equal(from_checkpoint.state_dict()[k], final[k]) for k in final)
    state = torch.load(last_checkpoint / "state.pt", weights_only=True)
    assert state["format"] == "srframe.train/1"
    assert state["progress"]["step"] == 8 and state["progress"]["stage"] == 1 and state["progress"]["stage_step"] == 4
    assert set(state["stage"]) >= {"optimizer", "scheduler", "discriminator_optimizer", "discriminator_scheduler"}
    assert [set(feed) for feed in state["feeds"]] == [{"loader", "degradation"}]
    discriminator = srframe.load_component(last_checkpoint / "discriminator.safetensors", "discriminator")
    assert type(discriminator).__name__ == "SRGANDiscriminator"


def test_eval_and_upscale_take_the_run_directory(two_stage_run, val_folder, tmp_path, capsys):
    _, run_dir, _ = two_stage_run
    assert main(["eval", str(run_dir), "--data", str(val_folder), "--scale", "4", "--no-lpips",
                 "--json", str(tmp_path / "results.json")]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (by_model,) = results.values()
    assert len(by_model) == 2 and all(scores["n"] == 2 for scores in by_model.values())  # the run and bicubic
    out = tmp_path / "upscaled"
    assert main(["upscale", str(val_folder / "a.png"), "-o", str(out), "--model", str(run_dir)]) == 0
    from PIL import Image

    (written,) = out.iterdir()
    assert Image.open(written).size == (128, 128)


def test_an_existing_run_directory_is_not_overwritten(two_stage_run, capsys):
    recipe, run_dir, _ = two_stage_run
    before = h.snapshot(run_dir)
    assert main(["run", str(recipe), "--run-dir", str(run_dir)]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "already exists" in message and "--resume" in message and "--run-dir" in message
    assert h.snapshot(run_dir) == before


def test_resuming_a_finished_run_changes_nothing(two_stage_run, capsys):
    recipe, run_dir, _ = two_stage_run
    before = h.snapshot(run_dir)
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--resume"]) == 0
    assert h.snapshot(run_dir) == before


@pytest.mark.parametrize("override, named", [
    ("seed=1", "seed"),
    ('stages[0].losses=[{kind = "l1"}]', "stages[0].losses[0].kind"),
    ("stages[0].steps=5", "stages[0].steps"),
])
def test_a_changed_recipe_is_refused_on_resume(two_stage_run, override, named, capsys):
    recipe, run_dir, _ = two_stage_run
    before = h.snapshot(run_dir)
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--resume", "--set", override]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "cannot resume" in message and named in message
    assert h.snapshot(run_dir) == before


# -- harmless changes and half-written checkpoints on resume ---------------------------------------------


@pytest.fixture(scope="module")
def pixel_runs(tmp_path_factory, plugin):
    """A one-stage MSE recipe trained for 3 steps (checkpoints at 2 and 3), and the same trained for 5."""
    tmp = tmp_path_factory.mktemp("pixel_runs")
    recipe = h.write_recipe(tmp / "pixel.toml", h.recipe_data([h.pixel_stage("pixel", 3)], plugin=plugin))
    threads = torch.get_num_threads()  # a module fixture is set up before the autouse one_thread
    torch.set_num_threads(1)
    try:
        h.run_inprocess(recipe, tmp / "short")
        h.run_inprocess(recipe, tmp / "long", "stages[0].steps=5")
    finally:
        torch.set_num_threads(threads)
    return recipe, tmp / "short", tmp / "long"


def test_harmless_changes_are_accepted_and_the_run_goes_on_to_the_new_step_count(pixel_runs, tmp_path, caplog):
    recipe, short, long = pixel_runs
    run_dir = shutil.copytree(short, tmp_path / "run")
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--resume",
                 "--set", "train.log_every=2", "--set", "stages[0].steps=5"]) == 0
    assert "resuming with changed settings: stages[0].steps, train.log_every" in caplog.text
    # steps 1..3 kept from the first run, then every 2nd step and the stage's last
    assert [r["step"] for r in h.train_records(run_dir)] == [1, 2, 3, 4, 5]
    assert max(h.checkpoint_steps(run_dir)) == 5
    resolved = tomllib.loads((run_dir / "recipe.toml").read_text())
    assert resolved["stages"][0]["steps"] == 5 and resolved["train"]["log_every"] == 2
    starts = json.loads((run_dir / "environment.json").read_text())["starts"]
    assert len(starts) == 2 and starts[1]["resumed_from"].endswith("checkpoints/00000003")
    h.assert_same_tensors(run_dir / "generator.safetensors", long / "generator.safetensors")


def test_resume_ignores_half_written_checkpoints(pixel_runs, tmp_path):
    recipe, short, long = pixel_runs
    run_dir = shutil.copytree(short, tmp_path / "run")
    checkpoints = run_dir / "checkpoints"
    shutil.copytree(checkpoints / "00000003", checkpoints / ".partial-00000004")  # killed before its rename
    (checkpoints / "00000005").mkdir()  # a folder without state.pt
    shutil.copy(checkpoints / "00000003" / "generator.safetensors", checkpoints / "00000005")
    h.run_inprocess(recipe, run_dir, "stages[0].steps=5", resume=True)
    starts = json.loads((run_dir / "environment.json").read_text())["starts"]
    assert starts[-1]["resumed_from"].endswith("checkpoints/00000003")
    assert h.checkpoint_steps(run_dir) == [2, 3, 4, 5]
    assert not (checkpoints / ".partial-00000004").exists() and (checkpoints / "00000005" / "state.pt").is_file()
    h.assert_same_tensors(run_dir / "generator.safetensors", long / "generator.safetensors")
    h.assert_same_tensors(checkpoints / "00000005" / "generator.safetensors", long / "generator.safetensors")


# -- failures: missing weights, NaN, an unwritable checkpoint -------------------------------------------


def test_a_second_stage_missing_its_weights_fails_before_step_1(tmp_path, monkeypatch, capsys):
    for variable, folder in (("TORCH_HOME", "torch_home"), ("SRFRAME_CACHE", "srframe_cache")):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.setenv("SRFRAME_OFFLINE", "1")
    perceptual = {"name": "perceptual", "steps": 2,
                  "losses": [{"kind": "l1"}, {"kind": "vgg", "backbone": "vgg16", "layers": "relu2_2"}]}
    recipe = h.write_recipe(tmp_path / "vgg.toml", h.recipe_data([h.pixel_stage("pixel", 2), perceptual]))
    with pytest.raises(WeightsError, match="no ImageNet weights for vgg16"):
        h.run_inprocess(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing trained, no folder left that would need --resume
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert "no ImageNet weights for vgg16" in err and "Traceback" not in err
    assert not (tmp_path / "run2").exists()


def test_a_nan_loss_stops_the_run_naming_stage_step_and_term(tmp_path, plugin, capsys):
    recipe = h.write_recipe(tmp_path / "nan.toml", h.recipe_data(
        [h.pixel_stage("pixel", 2), h.gan_stage("gan", 4, {"kind": "nan_at", "at_step": 5})], plugin=plugin))
    with pytest.raises(TrainingError) as raised:
        h.run_inprocess(recipe, tmp_path / "run")
    message = str(raised.value)
    assert "stage 'gan', step 3 (run step 5)" in message and "'nan_at' is nan" in message
    assert "checkpoints/00000004" in message
    run_dir = tmp_path / "run"
    assert h.checkpoint_steps(run_dir) == [2, 4]  # nothing saved after the NaN
    assert not (run_dir / "generator.safetensors").exists()
    generator = srframe.load_generator(run_dir)  # the newest checkpoint's
    saved = load_file(str(run_dir / "checkpoints" / "00000004" / "generator.safetensors"))
    assert all(torch.equal(generator.state_dict()[k], v) for k, v in saved.items())
    assert all(torch.isfinite(v).all() for v in saved.values())
    state = torch.load(run_dir / "checkpoints" / "00000004" / "state.pt", weights_only=True)
    assert state["progress"]["step"] == 4
    assert [r["step"] for r in h.train_records(run_dir)] == [1, 2, 3, 4]

    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "cli")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "stage 'gan', step 3 (run step 5)" in err and "'nan_at'" in err and "Traceback" not in err


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([h.pixel_stage("pixel", 4)]))
    real_save, calls = torch.save, []

    def save_once(*args, **kwargs):
        calls.append(args[1])
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", save_once)
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*00000004.*No space left"):
        h.run_inprocess(recipe, tmp_path / "run")
    monkeypatch.undo()
    run_dir = tmp_path / "run"
    assert h.checkpoint_steps(run_dir) == [2]
    assert not list((run_dir / "checkpoints").glob(".partial-*"))
    assert torch.load(run_dir / "checkpoints" / "00000002" / "state.pt", weights_only=True)["progress"]["step"] == 2
    srframe.load_generator(run_dir)
