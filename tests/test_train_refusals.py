"""What a newcomer ran into, each fixed: settings that cannot train refused at check time, run
directories that are not run directories, damaged checkpoints, resumes that cannot go on, grey
validation images scored as `srframe eval` scores them."""

from __future__ import annotations

import shutil

import pytest

import srframe
from srframe.errors import CheckpointError, RecipeError

import train_helpers as h
from train_helpers import one_thread, plugin, val_folder  # noqa: F401  (fixtures)


def _problems(recipe, *overrides: str) -> dict[str, str]:
    with pytest.raises(RecipeError) as caught:
        srframe.load_recipe(recipe, list(overrides))
    return {p.path: p.message for p in caught.value.problems}


def test_settings_that_cannot_train_are_refused_at_check_time(tmp_path):
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([h.pixel_stage()]))
    found = _problems(recipe, "train.device=gpu", "train.ema_decay=1.0", 'train.best_metric="lpips"')
    assert 'expected "auto", "cpu", "cuda" or "cuda:N"' in found["train.device"]
    assert "expected a number >= 0 and < 1" in found["train.ema_decay"]  # 1.0 would never move the average
    assert "set lpips = true too" in found["train.best_metric"]
    assert srframe.load_recipe(recipe, ["train.device=cuda:1", "train.lpips=true", 'train.best_metric="lpips"'])


def test_a_run_dir_that_is_a_file_or_another_folder_is_named_so(tmp_path):
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([h.pixel_stage()]))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="is a file: a run directory is a folder"):
        h.run_inprocess(recipe, tmp_path / "afile")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_text("x")
    for resume in (False, True):
        with pytest.raises(CheckpointError, match="holds other files, not a srframe run directory"):
            h.run_inprocess(recipe, tmp_path / "photos", resume=resume)
    assert (tmp_path / "photos" / "a.png").read_text() == "x"


@pytest.fixture
def stopped(tmp_path):
    """A run of 6 steps stopped after its checkpoint at step 4: (recipe, run_dir)."""
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([h.pixel_stage("pixel", 6)]))
    run_dir = h.run_inprocess(recipe, tmp_path / "run", "stages[0].steps=4")
    return recipe, run_dir


def test_a_damaged_checkpoint_says_to_delete_it_and_resume_from_the_one_before(stopped):
    recipe, run_dir = stopped
    (run_dir / "generator.safetensors").unlink()  # so the run is not finished
    (run_dir / "checkpoints" / "00000004" / "generator.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"00000004: .*delete that folder to resume from the one before it"):
        h.run_inprocess(recipe, run_dir, "stages[0].steps=4", resume=True)
    shutil.rmtree(run_dir / "checkpoints" / "00000004")
    assert h.run_inprocess(recipe, run_dir, "stages[0].steps=4", resume=True) == run_dir  # from step 2


def test_a_stage_shortened_below_what_it_trained_is_refused(stopped):
    recipe, run_dir = stopped
    with pytest.raises(CheckpointError, match=r"'pixel' has trained 4 steps already, more than steps = 3"):
        h.run_inprocess(recipe, run_dir, "stages[0].steps=3", resume=True)


def test_a_parameter_a_plugin_added_since_does_not_block_a_resume(stopped):
    """recipe.toml written before a component gained a defaulted parameter still resumes."""
    recipe, run_dir = stopped
    stored = run_dir / "recipe.toml"
    stored.write_text(stored.read_text().replace('upsample = "subpixel"\n', ""))
    assert "upsample" not in stored.read_text()
    assert h.run_inprocess(recipe, run_dir, "stages[0].steps=6", resume=True) == run_dir
    assert h.last_step_logged(run_dir) == 6


def test_changing_a_component_kind_names_only_its_kind(stopped):
    recipe, run_dir = stopped
    with pytest.raises(CheckpointError) as caught:
        h.run_inprocess(recipe, run_dir, "stages[0].steps=4", "degradation={ kind = 'kornia_first_order' }",
                        resume=True)
    assert "would break the run: degradation.kind." in str(caught.value)


def test_grey_validation_images_score_as_srframe_eval_scores_them(tmp_path):
    from PIL import Image

    from srframe.eval.benchmark import load_benchmark
    from srframe.train.validate import validation_images

    folder = tmp_path / "val"
    folder.mkdir()
    h.write_png(folder / "colour.png", 40, 36)
    Image.open(h.write_png(tmp_path / "rgb.png", 40, 36, seed=1)).convert("L").save(folder / "grey.png")  # 1 channel
    dataset = srframe.build("dataset", "image_folder", root=folder, scale=4, mode="val")
    ours = {image.name: image for image in validation_images(dataset, 4)}
    theirs = {image.name: image for image in load_benchmark(folder, 4)}
    assert ours["grey"].hr.shape[0] == 1 and set(ours) == set(theirs)
    for name in ours:
        assert (ours[name].hr == theirs[name].hr).all() and (ours[name].lr == theirs[name].lr).all()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for a run without CUDA")
def test_fused_ops_without_cuda_are_refused_before_the_run_directory_is_made(tmp_path):
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([h.pixel_stage()]))
    with pytest.raises(RecipeError, match=r'train.ops = "fused" runs the Triton kernels, which need CUDA.*"auto"'):
        h.run_inprocess(recipe, tmp_path / "run", 'train.ops="fused"')
    assert not (tmp_path / "run").exists()
