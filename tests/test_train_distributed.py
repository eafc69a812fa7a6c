"""Data-parallel training under torchrun on the CPU (gloo): two processes train the tiny recipe, rank 0
writes the run directory, and one step on a global batch split over the ranks is one step on the whole."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import srframe

import train_helpers as h
from train_helpers import one_thread, plugin  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # each test starts three interpreters (torchrun and its two workers)


def test_torchrun_trains_the_two_stage_recipe(tmp_path):
    recipe = h.write_recipe(tmp_path / "tiny.toml", h.recipe_data(
        [h.pixel_stage("pixel", 3), h.gan_stage("gan", 3)], data_train={"batch_size": 4},
        train={"log_every": 1, "checkpoint_every": 2}))
    run_dir = tmp_path / "run"
    result = h.torchrun("run", recipe, "--run-dir", run_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("run directory:") == 1  # rank 0 speaks for the run
    (start,) = json.loads((run_dir / "environment.json").read_text())["starts"]
    assert start["processes"] == 2
    records = h.train_records(run_dir)
    assert [(r["step"], r["stage"]) for r in records] == [(s, "pixel") for s in (1, 2, 3)] + \
        [(s, "gan") for s in (4, 5, 6)]
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    assert h.checkpoint_steps(run_dir) == [2, 3, 4, 6]
    assert (run_dir / "checkpoints" / "00000006" / "discriminator.safetensors").is_file()
    for stage in ("pixel", "gan"):
        assert (run_dir / "stages" / stage / "generator.safetensors").is_file()
    generator = srframe.load_generator(run_dir)
    final = load_file(str(run_dir / "generator.safetensors"))
    assert all(torch.equal(generator.state_dict()[k], v) for k, v in final.items())
    # nothing written by the other rank: one run directory, one metrics line per logged step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.toml"]


@pytest.mark.filterwarnings("ignore:Data has no positive values")  # curves.png of the run with lr = 0
def test_one_data_parallel_step_equals_one_step_on_the_whole_batch(tmp_path, plugin):
    """Two ranks with 2 patches each (batch_size = 4 is global) make the update one process makes with
    all 4: DDP averages the ranks' gradients of their mean losses, which is the gradient of the mean loss
    over the 4 patches. norm = "none" (batch norm statistics would be per rank) and the bicubic degradation
    (no random draws) make the two runs see the same inputs. SGD (timm's: Nesterov, momentum 0.9) makes
    the first update linear in the gradient, 1.9 * lr * grad, so the two updates differ only by the
    rounding of the gradients' sums (float32 sums in a different order, then the all-reduce): the
    tolerance is 1e-5 of the largest update, well above float32 rounding (about 1e-7 relative) and far
    below any real difference (one rank's half batch alone gives an update about 12 % off)."""
    def recipe(name: str):
        folder = tmp_path / f"{name}_batches"
        folder.mkdir()
        stage = h.pixel_stage("pixel", 1, {"kind": "record_batch", "folder": str(folder), "weight": 0.0},
                              optimizer={"kind": "sgd", "lr": 0.05})
        return h.write_recipe(tmp_path / f"{name}.toml", h.recipe_data(
            [stage], plugin=plugin, data_train={"batch_size": 4}, train={"checkpoint_every": 1}))

    ddp = h.torchrun("run", recipe("ddp"), "--run-dir", tmp_path / "ddp", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    single_dir = h.run_inprocess(recipe("single"), tmp_path / "single")
    start = h.run_inprocess(recipe("start"), tmp_path / "start", 'stages[0].optimizer.lr=0')

    # the same global batch: item i of rank r is item r + 2i of the single process's batch
    ranks = [torch.load(tmp_path / "ddp_batches" / f"step1_rank{r}.pt") for r in (0, 1)]
    whole = torch.load(tmp_path / "single_batches" / "step1_rank0.pt")
    assert ranks[0].shape[0] == ranks[1].shape[0] == 2 and whole.shape[0] == 4
    assert torch.equal(torch.stack(ranks, dim=1).flatten(0, 1), whole)

    initial = load_file(str(start / "generator.safetensors"))
    distributed = load_file(str(tmp_path / "ddp" / "generator.safetensors"))
    single = load_file(str(single_dir / "generator.safetensors"))
    gap, largest = h.update_gap(distributed, single, initial)
    assert largest > 1e-3 and gap <= 1e-5 * largest, f"updates differ by {gap:.3g} of {largest:.3g}"
    # the logged loss is the mean over the ranks, i.e. the whole batch's
    mse = [h.train_records(run)[0]["mse"] for run in (tmp_path / "ddp", single_dir)]
    assert mse[0] == pytest.approx(mse[1], rel=1e-6)


def test_a_killed_data_parallel_run_with_a_random_degradation_resumes_exactly(tmp_path, plugin):
    """Each rank draws its degradations from its own generator: a checkpoint must keep every rank's, so that
    after --resume rank 1 goes on with its own random stream, not a copy of rank 0's."""
    marker = tmp_path / "killed_{rank}"
    stage = h.pixel_stage("pixel", 4, {"kind": "killer", "at_step": 4, "marker": str(marker), "weight": 0.0})
    recipe = h.write_recipe(tmp_path / "ddp.toml", h.recipe_data(
        [stage], plugin=plugin, data_train={"batch_size": 4}, degradation={"kind": "kornia_first_order"}))
    for rank in (0, 1):
        (tmp_path / f"killed_{rank}").touch()
    reference = h.torchrun("run", recipe, "--run-dir", tmp_path / "reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    for rank in (0, 1):
        (tmp_path / f"killed_{rank}").unlink()
    killed = h.torchrun("run", recipe, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert killed.returncode != 0 and h.checkpoint_steps(tmp_path / "run") == [2]
    resumed = h.torchrun("run", recipe, "--run-dir", tmp_path / "run", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    h.assert_same_tensors(tmp_path / "run" / "generator.safetensors", tmp_path / "reference" / "generator.safetensors")
