"""Units of the training engine that need no training run: the recipe comparison of --resume,
checkpoint retention, atomic checkpoints, the run-directory layout, schedules and the metrics log."""

from __future__ import annotations

import json

import pytest
import torch

import srframe
from srframe.errors import CheckpointError
from srframe.train import checkpoint, schedules
from srframe.train.checkpoint import STATE, RunDir, prune, recipe_changes, write_checkpoint
from srframe.train.log import TrainingLog, read_metrics

from train_helpers import one_thread  # noqa: F401  (autouse)

RECIPE = {
    "name": "tiny", "seed": 0, "scale": 4, "output_dir": "runs", "plugins": [],
    "generator": {"kind": "srresnet", "num_blocks": 1, "channels": 8},
    "data": {"train": {"kind": "samples", "batch_size": 4, "num_workers": 0, "pin_memory": True},
             "val": {"kind": "samples", "names": ["chelsea"]}},
    "train": {"log_every": 100, "val_every": 1000, "checkpoint_every": 1000, "precision": "fp32", "ema_decay": 0.0},
    "stages": [{"name": "pixel", "steps": 10, "losses": [{"kind": "mse", "weight": 1.0}]},
               {"name": "gan", "steps": 10, "losses": [{"kind": "l1", "weight": 1.0}],
                "discriminator": {"kind": "srgan", "channels": 8}}],
}


def changed(**edits):
    """A deep copy of RECIPE with ``edits`` applied: {"a.b[1].c": value} (a value of DELETE removes the key)."""
    import copy
    import re

    data = copy.deepcopy(RECIPE)
    for path, value in edits.items():
        parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path.replace("__", "."))]
        target = data
        for part in parts[:-1]:
            target = target[part]
        if value is DELETE:
            del target[parts[-1]]
        elif isinstance(target, list) and parts[-1] == len(target):
            target.append(value)
        else:
            target[parts[-1]] = value
    return data


DELETE = object()


# -- recipe_changes: what --resume accepts --------------------------------------------------------


def test_an_unchanged_recipe_has_no_changes():
    assert recipe_changes(RECIPE, changed()) == ([], [])


@pytest.mark.parametrize("edits, breaking", [
    ({"seed": 1}, ["seed"]),
    ({"scale": 2}, ["scale"]),
    ({"generator__channels": 16}, ["generator.channels"]),
    ({"data__train__batch_size": 8}, ["data.train.batch_size"]),
    ({"train__precision": "bf16"}, ["train.precision"]),
    ({"train__ema_decay": 0.999}, ["train.ema_decay"]),
    ({"stages[0].steps": 20}, ["stages[0].steps"]),  # only the last stage may grow
    ({"stages[1].steps": 5, "stages[0].steps": 5}, ["stages[0].steps"]),
    ({"stages[0].losses[0].kind": "l1"}, ["stages[0].losses[0].kind"]),
    ({"stages[0].losses[0].weight": 0.5}, ["stages[0].losses[0].weight"]),
    ({"stages[1].discriminator__channels": 16}, ["stages[1].discriminator.channels"]),
    ({"stages[0].name": "warm"}, ["stages[0].name"]),
])
def test_changes_that_would_break_a_run_are_named(edits, breaking):
    found, _ = recipe_changes(RECIPE, changed(**edits))
    assert found == breaking


def test_a_new_stage_or_loss_is_breaking():
    more = changed(**{"stages[2]": {"name": "more", "steps": 3, "losses": [{"kind": "mse"}]}})
    breaking, _ = recipe_changes(RECIPE, more)
    assert "stages" in breaking and "stages[2].name" in breaking
    extra_loss = changed(**{"stages[0].losses[1]": {"kind": "l1", "weight": 0.1}})
    breaking, _ = recipe_changes(RECIPE, extra_loss)
    assert "stages[0].losses" in breaking


@pytest.mark.parametrize("edits, harmless", [
    ({"train__log_every": 1}, ["train.log_every"]),
    ({"train__val_every": 5, "train__checkpoint_every": 7}, ["train.checkpoint_every", "train.val_every"]),
    ({"name": "renamed", "output_dir": "elsewhere"}, ["name", "output_dir"]),
    ({"data__train__num_workers": 4, "data__train__pin_memory": False},
     ["data.train.num_workers", "data.train.pin_memory"]),
    ({"data__val__names": ["coffee"]}, ["data.val.names"]),
    ({"data__val": DELETE}, ["data.val.kind", "data.val.names"]),
    ({"stages[1].steps": 30}, ["stages[1].steps"]),  # more steps in the last stage
])
def test_harmless_changes_are_accepted(edits, harmless):
    assert recipe_changes(RECIPE, changed(**edits)) == ([], harmless)


@pytest.mark.parametrize("scheduler, harmless", [
    ({"kind": "multistep", "milestones": [5], "gamma": 0.1}, True),
    ({"kind": "step", "step_size": 4}, True),
    ({"kind": "constant", "warmup_steps": 2}, True),
    ({"kind": "cosine", "eta_min": 0.0}, False),  # resumed, it would keep the old length and rise again
    ({"kind": "linear", "end_factor": 0.0}, False),  # resumed, it would go on at lr 0
])
def test_more_steps_in_the_last_stage_are_harmless_unless_its_schedule_spans_the_stage(scheduler, harmless):
    stored = changed(**{"stages[1].scheduler": scheduler})
    current = changed(**{"stages[1].scheduler": scheduler, "stages[1].steps": 30})
    expected = ([], ["stages[1].steps"]) if harmless else (["stages[1].steps"], [])
    assert recipe_changes(stored, current) == expected


# -- the run directory: complete checkpoints, retention, atomic writes ------------------------------


def fake_checkpoint(run: RunDir, step: int, complete: bool = True) -> None:
    folder = run.checkpoint(step)
    folder.mkdir(parents=True)
    (folder / "generator.safetensors").write_bytes(b"weights")
    if complete:
        torch.save({"progress": {"step": step}}, folder / STATE)


def test_half_written_checkpoints_are_not_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    assert run.checkpoint_steps() == [] and run.latest_checkpoint() is None
    for step in (2, 4):
        fake_checkpoint(run, step)
    fake_checkpoint(run, 6, complete=False)  # a step folder without state.pt
    partial = run.checkpoints / ".partial-00000008"  # a write that was killed half-way
    partial.mkdir()
    torch.save({"progress": {"step": 8}}, partial / STATE)
    (run.checkpoints / "notes").mkdir()
    assert run.checkpoint_steps() == [2, 4]
    assert run.latest_checkpoint() == tmp_path / "checkpoints" / "00000004"


def test_prune_keeps_the_newest_and_every_stages_best(tmp_path):
    run = RunDir(tmp_path)
    for step in range(1, 8):
        fake_checkpoint(run, step)
    checkpoint.write_json(run.best, {"pixel": {"step": 2, "metric": "psnr_y", "value": 20.0},
                                     "gan": {"step": 5, "metric": "psnr_y", "value": 19.0}})
    prune(run, keep=2)
    assert run.checkpoint_steps() == [2, 5, 6, 7]
    prune(run, keep=1)
    assert run.checkpoint_steps() == [2, 5, 7]


def test_prune_without_best_keeps_the_newest(tmp_path):
    run = RunDir(tmp_path)
    for step in (10, 20, 30, 40):
        fake_checkpoint(run, step)
    prune(run, keep=3)
    assert run.checkpoint_steps() == [20, 30, 40]


def tiny_generator():
    return srframe.build("generator", "srresnet", scale=4, num_blocks=1, channels=8, norm="none")


def test_write_checkpoint_is_whole_and_readable_with_weights_only(tmp_path):
    run = RunDir(tmp_path)
    generator = tiny_generator()
    state = {"format": "srframe.train/1", "progress": {"step": 3}, "rng": {"torch": torch.get_rng_state()}}
    folder = write_checkpoint(run, 3, {"generator.safetensors": generator}, state)
    assert folder == tmp_path / "checkpoints" / "00000003"
    assert sorted(p.name for p in folder.iterdir()) == ["generator.safetensors", "state.pt"]
    assert not list(run.checkpoints.glob(".partial-*"))
    loaded = torch.load(folder / STATE, weights_only=True)
    assert loaded["progress"] == {"step": 3} and torch.equal(loaded["rng"]["torch"], state["rng"]["torch"])
    again = srframe.load_generator(folder)
    for name, value in generator.state_dict().items():
        assert torch.equal(again.state_dict()[name], value)
    # the same step written again (after an interrupt at a checkpoint step) replaces it whole
    write_checkpoint(run, 3, {"generator.safetensors": generator}, {**state, "progress": {"step": 33}})
    assert checkpoint.read_state(folder)["progress"] == {"step": 33}


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    generator = tiny_generator()
    first = write_checkpoint(run, 2, {"generator.safetensors": generator}, {"progress": {"step": 2}})
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with torch.no_grad():
        next(generator.parameters()).add_(1.0)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*00000004.*No space left.*intact"):
        write_checkpoint(run, 4, {"generator.safetensors": generator}, {"progress": {"step": 4}})
    # the same step again: the complete earlier checkpoint of that step must survive too
    with pytest.raises(CheckpointError):
        write_checkpoint(run, 2, {"generator.safetensors": generator}, {"progress": {"step": 2}})
    monkeypatch.undo()
    assert run.checkpoint_steps() == [2]
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["00000002"]  # no partial folder left behind
    assert checkpoint.read_state(first)["progress"] == {"step": 2}


def test_a_damaged_state_file_is_a_checkpoint_error(tmp_path):
    folder = tmp_path / "00000001"
    folder.mkdir()
    (folder / STATE).write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="cannot read the training state"):
        checkpoint.read_state(folder)


def test_state_with_code_is_refused(tmp_path):
    folder = tmp_path / "00000001"
    folder.mkdir()
    torch.save({"progress": {"step": 1}, "evil": RunDir(tmp_path)}, folder / STATE)  # an arbitrary object
    with pytest.raises(CheckpointError, match="cannot read the training state"):
        checkpoint.read_state(folder)


def test_generator_file_prefers_the_final_generator_then_the_newest_checkpoints_ema(tmp_path):
    run = RunDir(tmp_path)
    assert run.generator_file() is None
    fake_checkpoint(run, 2)
    assert run.generator_file() == run.checkpoint(2) / "generator.safetensors"
    fake_checkpoint(run, 4)
    (run.checkpoint(4) / "generator_ema.safetensors").write_bytes(b"ema")
    assert run.generator_file() == run.checkpoint(4) / "generator_ema.safetensors"
    assert RunDir(run.checkpoint(2)).generator_file() == run.checkpoint(2) / "generator.safetensors"
    run.generator.write_bytes(b"final")
    assert run.generator_file() == run.generator


# -- schedules -------------------------------------------------------------------------------------


def rates(name, params, steps, lr=1e-4):
    """The learning rate each step of a ``steps``-step stage trains with."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = schedules.build(name, params, optimizer, steps)
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return used


def test_multistep_drops_after_the_milestone():
    assert rates("multistep", {"milestones": [3], "gamma": 0.1}, 6) == pytest.approx([1e-4] * 3 + [1e-5] * 3)


def test_warmup_ramps_linearly_then_hands_over():
    used = rates("multistep", {"milestones": [4], "gamma": 0.1, "warmup_steps": 2, "warmup_start": 0.5}, 6)
    assert used == pytest.approx([5e-5, 7.5e-5, 1e-4, 1e-4, 1e-5, 1e-5])
    assert rates("constant", {"warmup_steps": 4, "warmup_start": 0.2}, 6) == pytest.approx(
        [2e-5, 4e-5, 6e-5, 8e-5, 1e-4, 1e-4])


def test_cosine_and_linear_decay_over_the_stage():
    cosine = rates("cosine", {"eta_min": 0.0}, 4)
    assert cosine[0] == pytest.approx(1e-4) and all(a > b for a, b in zip(cosine, cosine[1:]))
    assert rates("linear", {"end_factor": 0.0}, 4) == pytest.approx([1e-4, 7.5e-5, 5e-5, 2.5e-5])


def test_schedule_refusals():
    assert dict(schedules.refusals("constant", {"warmup_steps": 5}, 5))
    assert [key for key, _ in schedules.refusals("multistep", {"milestones": [2, 1]}, 10)] == ["milestones"]
    assert [key for key, _ in schedules.refusals("multistep", {"milestones": [10]}, 10)] == ["milestones"]
    assert not list(schedules.refusals("multistep", {"milestones": [3, 6], "warmup_steps": 2}, 10))


# -- the metrics log -------------------------------------------------------------------------------


def test_logged_means_count_only_the_steps_a_term_was_computed_in(tmp_path):
    """A GAN stage with generator_every = 2 computes the generator's terms every other step: their
    logged mean is over those steps, not diluted by the steps without them."""
    run = RunDir(tmp_path)
    log = TrainingLog(run, 4, 2, 16 * 16, main=True)
    log.step(1, "gan", 1, 4, {"d_total": 1.0}, 1e-4)
    log.step(2, "gan", 2, 4, {"l1": 0.5, "total": 0.5, "d_total": 3.0}, 1e-4)
    log.step(3, "gan", 3, 4, {"d_total": 1.0}, 1e-4)
    log.step(4, "gan", 4, 4, {"l1": 0.25, "total": 0.25, "d_total": 1.0}, 1e-5)
    log.close()
    records = read_metrics(run.metrics)
    assert [r["step"] for r in records] == [2, 4]
    assert records[0]["l1"] == 0.5 and records[0]["d_total"] == 2.0
    assert records[1]["l1"] == 0.25 and records[1]["d_total"] == 1.0 and records[1]["lr"] == 1e-5


def test_a_resumed_log_drops_the_records_after_its_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    lines = [{"kind": "train", "step": s, "stage": "pixel"} for s in (1, 2, 3, 4)]
    lines.insert(2, {"kind": "val", "step": 2, "stage": "pixel"})
    run.metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    TrainingLog(run, 4, 1, 1, main=True, first_step=2).close()
    assert [(r["kind"], r["step"]) for r in read_metrics(run.metrics)] == [("train", 1), ("train", 2), ("val", 2)]
