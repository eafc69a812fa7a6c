"""Saving generators and discriminators as safetensors, and rebuilding them without the recipe."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import srframe
from srframe.errors import CheckpointError


def _trained_generator():
    generator = srframe.build("generator", "srresnet", scale=2, num_blocks=2, channels=8, skip="bicubic")
    generator.train()
    generator(torch.rand(4, 3, 8, 8))  # move the batch-norm running statistics away from their initial values
    return generator.eval()


def test_generator_round_trip_rebuilds_the_same_model(tmp_path):
    generator = _trained_generator()
    path = srframe.save_component(generator, tmp_path / "g.safetensors")
    loaded = srframe.load_generator(path)
    lr = torch.rand(1, 3, 7, 9)
    assert torch.equal(loaded(lr), generator(lr))
    assert loaded.srframe_built_from == generator.srframe_built_from
    assert loaded.skip == "bicubic" and not loaded.training


def test_run_directory_prefers_its_final_generator_then_the_newest_checkpoint(tmp_path):
    generator = _trained_generator()
    for step in (900, 1000, 200, 1100):
        other = srframe.build("generator", "srresnet", scale=2, num_blocks=2, channels=8, skip="bicubic")
        with torch.no_grad():
            other.tail.bias.fill_(step)
        folder = tmp_path / "checkpoints" / f"{step:08d}"
        srframe.save_component(other, folder / "generator.safetensors")
        if step != 1100:  # a checkpoint is complete once its training state is there
            torch.save({}, folder / "state.pt")
    assert srframe.load_generator(tmp_path).tail.bias[0].item() == 1000
    assert srframe.load_generator(tmp_path / "checkpoints" / "00000900").tail.bias[0].item() == 900
    srframe.save_component(generator, tmp_path / "generator.safetensors")
    assert torch.equal(srframe.load_generator(tmp_path).tail.bias, generator.tail.bias)


def test_discriminator_round_trip(tmp_path):
    discriminator = srframe.build("discriminator", "srgan", channels=16).eval()
    path = srframe.save_component(discriminator, tmp_path / "d.safetensors")
    loaded = srframe.load_component(path, "discriminator").eval()
    img = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(img), discriminator(img))
    with pytest.raises(CheckpointError, match="holds a discriminator \\(srgan\\), not a generator"):
        srframe.load_generator(path)


def test_files_without_srframe_metadata_say_how_to_load_them(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no installed plugin recognises.*w \\[2\\].*load_model"):
        srframe.load_generator(plain)  # weights of no known architecture (see test_community_models.py)
    with pytest.raises(CheckpointError, match="no srframe metadata.*load_model"):
        srframe.load_component(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="is not a valid safetensors file"):
        srframe.load_generator(garbage)
    with pytest.raises(CheckpointError, match="holds no generator"):
        srframe.load_generator(tmp_path)  # a folder with neither generator.safetensors nor checkpoints


def test_only_components_built_by_srframe_can_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="not built by srframe.build"):
        srframe.save_component(torch.nn.Conv2d(3, 3, 3), tmp_path / "conv.safetensors")
    assert not (tmp_path / "conv.safetensors").exists()


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or run directory"):
        srframe.load_generator(tmp_path / "nope")


def test_saved_files_get_the_mode_other_files_get(tmp_path):
    model = srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8)
    saved = srframe.save_component(model, tmp_path / "g.safetensors")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert saved.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
