"""A one-channel generator is usable everywhere: trained on luminance (the SRCNN/VDSR convention),
validated and evaluated on RGB benchmark images through their Y, upscaling grey and RGB files."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from train_helpers import gan_stage, pixel_stage, recipe_data, run_inprocess, val_folder, write_recipe  # noqa: F401 (a fixture)

import srframe
from srframe.cli import main
from srframe.data.images import decode_image
from srframe.eval.metrics import rgb_to_y
from srframe.train.data import TrainingFeed


def test_the_training_feed_gives_a_one_channel_generator_the_y_of_its_patches():
    feed = object.__new__(TrainingFeed)  # only the channel rule; the whole feed runs in the test below
    feed.channels = 1
    rgb = torch.rand(2, 3, 8, 8)
    assert torch.equal(feed._in_channels(rgb), rgb_to_y(rgb) / 255)
    feed.channels = 3
    assert feed._in_channels(rgb) is rgb


def test_a_grey_model_trains_validates_evaluates_and_upscales(tmp_path, val_folder, capsys):
    stages = [pixel_stage(steps=2), {**gan_stage(steps=2), "discriminator": {"kind": "srgan", "channels": 8,
                                                                             "in_channels": 1}}]
    recipe = write_recipe(tmp_path / "grey.toml", recipe_data(
        stages, val=val_folder, generator={"in_channels": 1, "out_channels": 1},
        train={"val_every": 2, "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 10}, name="grey"))
    run_dir = run_inprocess(recipe, tmp_path / "run")
    model = srframe.load_generator(run_dir)
    assert model.in_channels == model.out_channels == 1

    assert main(["eval", str(run_dir), "--data", str(val_folder), "--no-lpips", "--json",
                 str(tmp_path / "t.json")]) == 0
    assert "| val" in capsys.readouterr().out.replace("| val_", "| val")

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(inputs / "colour.png")
    Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(inputs / "grey.png")
    assert main(["upscale", str(inputs), "-o", str(tmp_path / "out"), "--model", str(run_dir)]) == 0
    assert decode_image(tmp_path / "out" / "colour.png").shape == (40, 48, 3)
    assert decode_image(tmp_path / "out" / "grey.png").shape == (40, 48, 1)
