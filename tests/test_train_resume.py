"""Exact resume: a run killed (SIGKILL) or stopped (SIGINT, SIGTERM) and continued with --resume ends
with the weights of the uninterrupted run, bit for bit, on the CPU.

Each scenario trains one recipe three times: uninterrupted in this process (the reference, with the
kill switch already used up), then in a subprocess that kills or stops itself at a known step, then
continued with ``srframe run --resume``. Both recipes are the same file: the test losses that kill or
wait (see train_helpers) are switched by files, not by recipe keys.
"""

from __future__ import annotations

import signal

import pytest
import torch

import train_helpers as h
from train_helpers import one_thread, plugin  # noqa: F401  (fixtures)


def killer(at_step: int, tmp_path) -> dict:
    return {"kind": "killer", "at_step": at_step, "marker": str(tmp_path / "killed"), "weight": 0.0}


def assert_same_run(run_dir, reference, discriminator: bool = False) -> None:
    """The same final generator, stage generators, last discriminator, and logged loss terms."""
    h.assert_same_tensors(run_dir / "generator.safetensors", reference / "generator.safetensors")
    for stage in (reference / "stages").iterdir():
        h.assert_same_tensors(run_dir / "stages" / stage.name / "generator.safetensors",
                              stage / "generator.safetensors")
    last = max(h.checkpoint_steps(reference))
    assert max(h.checkpoint_steps(run_dir)) == last
    if discriminator:
        name = f"checkpoints/{last:08d}/discriminator.safetensors"
        h.assert_same_tensors(run_dir / name, reference / name)
    skip = {"time", "timestamp", "steps_per_s", "hr_mpx_per_s"}
    logged = [{k: v for k, v in r.items() if k not in skip} for r in h.train_records(run_dir)]
    expected = [{k: v for k, v in r.items() if k not in skip} for r in h.train_records(reference)]
    assert logged == expected


def kill_and_resume(tmp_path, recipe, kill_step: int, *, resume_in_subprocess: bool = True):
    """Train ``recipe`` uninterrupted (reference), then killed at ``kill_step`` and resumed; both run dirs."""
    marker = tmp_path / "killed"
    marker.touch()  # the reference run is not killed
    reference = h.run_inprocess(recipe, tmp_path / "reference")
    marker.unlink()
    run_dir = tmp_path / "run"
    killed = h.srframe_cli("run", recipe, "--run-dir", run_dir, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert marker.exists()
    steps = h.checkpoint_steps(run_dir)
    assert steps and max(steps) < kill_step
    assert h.last_step_logged(run_dir) == kill_step - 1
    assert not (run_dir / "generator.safetensors").exists()
    if resume_in_subprocess:
        resumed = h.srframe_cli("run", recipe, "--run-dir", run_dir, "--resume", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert f"checkpoints/{max(steps):08d}" in resumed.stderr  # "resuming ... from ..."
    else:
        h.run_inprocess(recipe, run_dir, resume=True)
    return run_dir, reference


def test_a_generator_only_stage_killed_and_resumed_ends_as_the_uninterrupted_run(tmp_path, plugin):
    recipe = h.write_recipe(tmp_path / "pixel.toml", h.recipe_data(
        [h.pixel_stage("pixel", 6, killer(5, tmp_path))], plugin=plugin))
    run_dir, reference = kill_and_resume(tmp_path, recipe, kill_step=5)
    assert_same_run(run_dir, reference)


def test_an_adversarial_stage_killed_and_resumed_ends_as_the_uninterrupted_run(tmp_path, plugin):
    recipe = h.write_recipe(tmp_path / "gan.toml", h.recipe_data(
        [h.pixel_stage("pixel", 2), h.gan_stage("gan", 5, killer(6, tmp_path))], plugin=plugin))
    run_dir, reference = kill_and_resume(tmp_path, recipe, kill_step=6, resume_in_subprocess=False)
    assert_same_run(run_dir, reference, discriminator=True)


def test_a_kill_just_after_a_stage_boundary_resumes_exactly(tmp_path, plugin):
    """Killed at the adversarial stage's first step: the newest checkpoint is the previous stage's last
    (its EMA too: EMA is on here)."""
    recipe = h.write_recipe(tmp_path / "boundary.toml", h.recipe_data(
        [h.pixel_stage("pixel", 3), h.gan_stage("gan", 3, killer(4, tmp_path))], plugin=plugin,
        train={"ema_decay": 0.9}))
    run_dir, reference = kill_and_resume(tmp_path, recipe, kill_step=4, resume_in_subprocess=False)
    assert_same_run(run_dir, reference, discriminator=True)


@pytest.mark.slow
def test_a_run_with_loader_workers_killed_and_resumed_ends_as_the_uninterrupted_run(tmp_path, plugin):
    recipe = h.write_recipe(tmp_path / "workers.toml", h.recipe_data(
        [h.pixel_stage("pixel", 2), h.gan_stage("gan", 4, killer(5, tmp_path))], plugin=plugin,
        data_train={"num_workers": 2, "repeat": 3}))  # 3 items: a batch of 2 per epoch, so epochs roll over
    run_dir, reference = kill_and_resume(tmp_path, recipe, kill_step=5)
    assert_same_run(run_dir, reference, discriminator=True)


# -- SIGINT and SIGTERM: checkpoint, exit 130, resume ----------------------------------------------------


def gate(at_step: int, folder) -> dict:
    folder.mkdir(exist_ok=True)
    return {"kind": "gate", "at_step": at_step, "folder": str(folder), "weight": 0.0}


def stop_at_gate(tmp_path, recipe, run_dir, gate_folder, number: int, step: int):
    """Start the run, wait until it is inside step ``step``, send signal ``number``, let it go on."""
    process = h.start_cli("run", recipe, "--run-dir", run_dir, cwd=tmp_path, log=tmp_path / "run.log")
    try:
        h.wait_for(lambda: (gate_folder / "reached").exists(), what=f"step {step}", process=process)
        assert h.last_step_logged(run_dir) == step - 1
        process.send_signal(number)
        (gate_folder / "go").touch()
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, (tmp_path / "run.log").read_text()


def test_sigint_checkpoints_exits_130_and_resumes_exactly(tmp_path, plugin):
    folder = tmp_path / "gate"
    recipe = h.write_recipe(tmp_path / "sigint.toml", h.recipe_data(
        [h.pixel_stage("pixel", 2), h.gan_stage("gan", 3, gate(4, folder))], plugin=plugin,
        train={"checkpoint_every": 10}))
    (folder / "go").touch()
    reference = h.run_inprocess(recipe, tmp_path / "reference")
    (folder / "go").unlink()

    run_dir = tmp_path / "run"
    code, output = stop_at_gate(tmp_path, recipe, run_dir, folder, signal.SIGINT, step=4)
    assert code == 130, output
    message = " ".join(output.split())
    assert "SIGINT received: stopped at step 4" in message
    assert str(run_dir / "checkpoints" / "00000004") in message and "--resume" in message
    assert h.checkpoint_steps(run_dir) == [2, 4]  # the stage's end, and the one the signal asked for
    state = torch.load(run_dir / "checkpoints" / "00000004" / "state.pt", weights_only=True)
    assert state["progress"]["step"] == 4 and state["progress"]["stage_step"] == 2
    assert h.last_step_logged(run_dir) == 4

    resumed = h.srframe_cli("run", recipe, "--run-dir", run_dir, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run_dir, reference, discriminator=True)


def test_sigterm_checkpoints_and_exits_130(tmp_path, plugin):
    folder = tmp_path / "gate"
    recipe = h.write_recipe(tmp_path / "sigterm.toml", h.recipe_data(
        [h.pixel_stage("pixel", 4, gate(3, folder))], plugin=plugin, train={"checkpoint_every": 10}))
    run_dir = tmp_path / "run"
    code, output = stop_at_gate(tmp_path, recipe, run_dir, folder, signal.SIGTERM, step=3)
    assert code == 130, output
    assert "SIGTERM received: stopped at step 3" in " ".join(output.split())
    assert h.checkpoint_steps(run_dir) == [3]
    h.run_inprocess(recipe, run_dir, resume=True)
    assert h.checkpoint_steps(run_dir) == [3, 4] and (run_dir / "generator.safetensors").is_file()
    assert [r["step"] for r in h.train_records(run_dir)] == [1, 2, 3, 4]
