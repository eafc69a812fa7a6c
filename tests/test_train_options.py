"""The [train] and stage switches, each in a tiny in-process run: schedules, the discriminator's warm-up
and generator_every, EMA, gradient accumulation, and mixed precision on the CPU."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import srframe

import train_helpers as h
from train_helpers import one_thread  # noqa: F401  (autouse)


def logged_rates(run_dir) -> list[float]:
    records = h.train_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))  # log_every = 1
    return [r["lr"] for r in records]


def checkpoint_generator(run_dir, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"{step:08d}" / "generator.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_multistep_drops_the_learning_rate_at_its_milestone_within_a_stage(tmp_path):
    """SRGAN's schedule in small: 1e-4 for the first 3 steps of the stage, then 1e-5."""
    scheduler = {"kind": "multistep", "milestones": [3], "gamma": 0.1}
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([
        h.pixel_stage("pixel", 2), h.gan_stage("gan", 6, scheduler=scheduler)]))
    h.run_inprocess(recipe, tmp_path / "run")
    assert logged_rates(tmp_path / "run") == pytest.approx([1e-4] * 2 + [1e-4] * 3 + [1e-5] * 3, rel=1e-9)
    # the discriminator's optimiser follows the same schedule
    state = torch.load(tmp_path / "run" / "checkpoints" / "00000008" / "state.pt", weights_only=True)
    assert state["stage"]["discriminator_optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)


def test_warmup_ramps_the_learning_rate_up_first(tmp_path):
    scheduler = {"kind": "constant", "warmup_steps": 3, "warmup_start": 0.25}
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([h.pixel_stage("pixel", 5, scheduler=scheduler)]))
    h.run_inprocess(recipe, tmp_path / "run")
    assert logged_rates(tmp_path / "run") == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4], rel=1e-9)


def test_the_discriminator_warms_up_before_the_generator_trains(tmp_path):
    """discriminator_warmup = 3: the adversarial stage's first 3 steps leave the generator as it was."""
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data(
        [h.pixel_stage("pixel", 1), h.gan_stage("gan", 5, discriminator_warmup=3)],
        train={"checkpoint_every": 1}))
    run_dir = h.run_inprocess(recipe, tmp_path / "run")
    start = load_file(str(run_dir / "stages" / "pixel" / "generator.safetensors"))
    for step in (2, 3, 4):  # gan steps 1..3
        assert same(checkpoint_generator(run_dir, step), start), step
    assert not same(checkpoint_generator(run_dir, 5), start)
    assert not same(checkpoint_generator(run_dir, 6), checkpoint_generator(run_dir, 5))
    discriminators = [load_file(str(run_dir / "checkpoints" / f"{s:08d}" / "discriminator.safetensors"))
                      for s in (2, 3, 4)]
    assert not same(discriminators[0], discriminators[1]) and not same(discriminators[1], discriminators[2])
    records = h.train_records(run_dir)
    assert all("l1" not in r and "d_total" in r for r in records[1:4])  # the generator's terms are not computed
    assert all("l1" in r for r in records[4:])


def test_generator_every_updates_the_generator_every_nth_step(tmp_path):
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data(
        [h.pixel_stage("pixel", 1), h.gan_stage("gan", 4, generator_every=2)], train={"checkpoint_every": 1}))
    run_dir = h.run_inprocess(recipe, tmp_path / "run")
    generators = [load_file(str(run_dir / "stages" / "pixel" / "generator.safetensors"))]
    generators += [checkpoint_generator(run_dir, step) for step in (2, 3, 4, 5)]  # gan steps 1..4
    changed = [not same(before, after) for before, after in zip(generators, generators[1:])]
    assert changed == [False, True, False, True]


def test_ema_weights_are_checkpointed_and_become_the_final_generator(tmp_path):
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data([h.pixel_stage("pixel", 3)],
                                                               train={"ema_decay": 0.5}))
    run_dir = h.run_inprocess(recipe, tmp_path / "run")
    last = run_dir / "checkpoints" / "00000003"
    assert {p.name for p in last.iterdir()} == {"generator.safetensors", "generator_ema.safetensors", "state.pt"}
    raw, ema = load_file(str(last / "generator.safetensors")), load_file(str(last / "generator_ema.safetensors"))
    final = load_file(str(run_dir / "generator.safetensors"))
    assert same(final, ema) and not same(final, raw)
    assert same(load_file(str(run_dir / "stages" / "pixel" / "generator.safetensors")), ema)
    # a checkpoint folder loads as its EMA generator
    loaded = srframe.load_generator(last).state_dict()
    assert all(torch.equal(loaded[k], ema[k]) for k in ema)
    # the average lags behind: halfway between the previous average and the raw weights
    previous = load_file(str(run_dir / "checkpoints" / "00000002" / "generator_ema.safetensors"))
    for name in ema:
        assert torch.allclose(ema[name], 0.5 * previous[name] + 0.5 * raw[name], atol=1e-7)


@pytest.mark.filterwarnings("ignore:Data has no positive values")  # curves.png of the run with lr = 0
def test_accumulating_two_batches_of_2_is_one_batch_of_4(tmp_path):
    """With norm = "none" and the bicubic degradation, two micro-batches of 2 hold the same patches as one
    batch of 4 (the sampler's order is global), and the mean of their mean losses is the mean loss of the 4.
    SGD makes the first update linear in the gradient (1.9 * lr * grad, timm's Nesterov momentum 0.9), so
    the updates differ only by the rounding of float32 sums taken in another order: the tolerance is 1e-5 of
    the largest update (the gap seen is below 1e-6 of it; the first micro-batch alone gives an update 12 % off)."""
    stage = h.pixel_stage("pixel", 1, optimizer={"kind": "sgd", "lr": 0.05})
    accumulated = h.write_recipe(tmp_path / "acc.toml", h.recipe_data(
        [stage], train={"accumulate": 2}, data_train={"batch_size": 2}))
    whole = h.write_recipe(tmp_path / "whole.toml", h.recipe_data([stage], data_train={"batch_size": 4}))
    start = load_file(str(h.run_inprocess(whole, tmp_path / "start", "stages[0].optimizer.lr=0")
                          / "generator.safetensors"))
    a = load_file(str(h.run_inprocess(accumulated, tmp_path / "acc") / "generator.safetensors"))
    b = load_file(str(h.run_inprocess(whole, tmp_path / "whole") / "generator.safetensors"))
    gap, largest = h.update_gap(a, b, start)
    assert largest > 1e-3 and gap <= 1e-5 * largest, f"updates differ by {gap:.3g} of {largest:.3g}"
    mse = [h.train_records(tmp_path / name)[0]["mse"] for name in ("acc", "whole")]
    assert mse[0] == pytest.approx(mse[1], rel=1e-6)


def test_bf16_trains_on_the_cpu(tmp_path):
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data(
        [h.pixel_stage("pixel", 2), h.gan_stage("gan", 2)], train={"precision": "bf16"}))
    run_dir = h.run_inprocess(recipe, tmp_path / "run")
    fp32_dir = h.run_inprocess(recipe, tmp_path / "fp32", "train.precision=\"fp32\"")
    records, fp32 = h.train_records(run_dir), h.train_records(fp32_dir)
    assert len(records) == 4 and all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    # autocast really ran in bfloat16: close to the fp32 losses, not equal to them
    assert records[0]["mse"] == pytest.approx(fp32[0]["mse"], rel=1e-2) and records[0]["mse"] != fp32[0]["mse"]
    final = load_file(str(run_dir / "generator.safetensors"))
    assert all(v.dtype == torch.float32 for v in final.values())  # the weights stay fp32
    assert not same(final, load_file(str(fp32_dir / "generator.safetensors")))


def test_fp16_trains_on_the_cpu_with_a_gradient_scaler(tmp_path):
    """fp16 autocast and torch.amp.GradScaler("cpu") both work on the CPU: the run trains, and the scaler's
    state is checkpointed."""
    recipe = h.write_recipe(tmp_path / "r.toml", h.recipe_data(
        [h.pixel_stage("pixel", 2), h.gan_stage("gan", 2)], train={"precision": "fp16"}))
    run_dir = h.run_inprocess(recipe, tmp_path / "run")
    records = h.train_records(run_dir)
    assert len(records) == 4 and all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    state = torch.load(run_dir / "checkpoints" / "00000004" / "state.pt", weights_only=True)
    assert state["stage"]["precision"]["scale"] > 0
    final = load_file(str(run_dir / "generator.safetensors"))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in final.values())
