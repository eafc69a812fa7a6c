"""Community checkpoints (the spandrel plugin): synthetic checkpoints in each architecture's real key
layout load through ``srframe.load_generator``, run through ``srframe upscale`` (tiled equals untiled)
and ``srframe eval``, save as srframe component files, fine-tune from a recipe, and a checkpoint
whose unpickling would run code is refused wherever a weights file is taken.

The checkpoints are random tensors with the names and shapes the projects write, as spandrel's own
tests make them: BasicSR's RRDBNet layout (``conv_first``, ``body.N.rdbM.convK``, wrapped in
``params_ema`` as Real-ESRGAN ships it), spandrel's (= the original projects') SRVGGNetCompact,
SPAN and SwinIR modules.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import srframe
from srframe.cli import main
from srframe.errors import CheckpointError, RecipeError

from train_helpers import pixel_stage, recipe_data, write_recipe

pytestmark = [pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")]
TINY_RRDBNET = {"kind": "rrdbnet", "num_blocks": 2, "num_filters": 8}


def basicsr_rrdbnet(scale: int = 4, num_feat: int = 8, num_block: int = 2, grow: int = 32, seed: int = 0
                    ) -> dict[str, torch.Tensor]:
    """BasicSR's RRDBNet state dict (the layout of RealESRGAN_x4plus.pth's ``params_ema``), random values.

    Scale 2 pixel-unshuffles the input by 2 first, so ``conv_first`` takes 12 channels.
    """
    generator = torch.Generator().manual_seed(seed)

    def conv(out: int, inp: int) -> dict[str, torch.Tensor]:
        return {"weight": torch.randn(out, inp, 3, 3, generator=generator) * 0.05,
                "bias": torch.randn(out, generator=generator) * 0.01}

    layers = {"conv_first": conv(num_feat, 3 * (4 if scale == 2 else 1))}
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for k in range(1, 6):
                layers[f"body.{block}.rdb{rdb}.conv{k}"] = conv(num_feat if k == 5 else grow, num_feat + (k - 1) * grow)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        layers[name] = conv(num_feat, num_feat)
    layers["conv_last"] = conv(3, num_feat)
    return {f"{name}.{part}": tensor for name, tensors in layers.items() for part, tensor in tensors.items()}


def spandrel_state(architecture: str, seed: int = 0, **hyperparameters) -> dict[str, torch.Tensor]:
    """The state dict of spandrel's own module (the original project's layout), randomly initialised."""
    import importlib

    torch.manual_seed(seed)
    module = importlib.import_module(f"spandrel.architectures.{architecture}")
    return getattr(module, architecture)(**hyperparameters).state_dict()


COMPACT = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4, act_type="prelu")
SPAN = dict(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4)
SWINIR = dict(in_chans=3, embed_dim=12, depths=[1, 1], num_heads=[2, 2], window_size=4, img_size=16, upscale=2,
              upsampler="pixelshuffle", mlp_ratio=2.0, resi_connection="1conv", img_range=1.0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One checkpoint file per case, as the projects write them."""
    folder = tmp_path_factory.mktemp("community")
    files = {
        "rrdbnet_params_ema": folder / "RealESRGAN_x4plus_tiny.pth",
        "rrdbnet_safetensors": folder / "rrdbnet_x2_flat.safetensors",
        "compact": folder / "compact_x4.pth",
        "span": folder / "span_x4.safetensors",
        "swinir": folder / "swinir_x2.pth",
    }
    torch.save({"params_ema": basicsr_rrdbnet(), "params": basicsr_rrdbnet(seed=1)}, files["rrdbnet_params_ema"])
    save_file(basicsr_rrdbnet(scale=2), str(files["rrdbnet_safetensors"]))
    torch.save({"params": spandrel_state("Compact", **COMPACT)}, files["compact"])
    save_file({k: v.contiguous() for k, v in spandrel_state("SPAN", **SPAN).items()}, str(files["span"]))
    torch.save({"state_dict": {f"module.{k}": v for k, v in spandrel_state("SwinIR", **SWINIR).items()}},
               files["swinir"])
    return files


EXPECTED = {  # case -> (registered generator, scale, architecture)
    "rrdbnet_params_ema": ("rrdbnet", 4, "ESRGAN"),
    "rrdbnet_safetensors": ("rrdbnet", 2, "ESRGAN"),
    "compact": ("compact", 4, "Compact"),
    "span": ("span", 4, "SPAN"),
    "swinir": ("swinir", 2, "SwinIR"),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_checkpoint_loads_as_spandrel_runs_it(checkpoints, case):
    """srframe's generator gives spandrel's own output (its descriptor call) on an odd-sized input."""
    import spandrel

    name, scale, architecture = EXPECTED[case]
    model = srframe.load_generator(checkpoints[case])
    assert isinstance(model, srframe.Generator) and not model.training
    assert (model.scale, model.architecture, model.srframe_built_from.name) == (scale, architecture, name)
    lr = torch.rand(1, 3, 21, 18, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(lr).clamp(0, 1)
    theirs = spandrel.ModelLoader().load_from_file(checkpoints[case]).eval()(lr)
    assert ours.shape == (1, 3, 21 * scale, 18 * scale)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_params_ema_is_preferred_to_params(checkpoints):
    """BasicSR saves both; the EMA weights are the ones it evaluates and publishes."""
    model = srframe.load_generator(checkpoints["rrdbnet_params_ema"])
    ema_first_conv = basicsr_rrdbnet()["conv_first.weight"]
    torch.testing.assert_close(model.net.state_dict()["model.0.weight"], ema_first_conv)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_upscale_tiled_equals_untiled_and_eval_scores(checkpoints, case, tmp_path, capsys):
    name, scale, _ = EXPECTED[case]
    rng = np.random.default_rng(0)
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)).save(image)
    whole, tiled = tmp_path / "whole", tmp_path / "tiled"
    assert main(["upscale", str(image), "-o", str(whole), "--model", str(checkpoints[case]), "--tile", "64"]) == 0
    assert main(["upscale", str(image), "-o", str(tiled), "--model", str(checkpoints[case]),
                 "--tile", "12", "--overlap", "16"]) == 0
    a, b = (np.asarray(Image.open(folder / "photo.png")) for folder in (whole, tiled))
    assert a.shape == (30 * scale, 26 * scale, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # equal up to the last bit's rounding

    benchmark = tmp_path / "bench" / "Tiny"
    benchmark.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (64, 56, 3), dtype=np.uint8)).save(benchmark / "a.png")
    table = tmp_path / "table.json"
    capsys.readouterr()
    assert main(["eval", str(checkpoints[case]), "--data", str(benchmark), "--no-lpips", "--json", str(table)]) == 0
    assert f"| Tiny | {checkpoints[case].stem} |" in capsys.readouterr().out


def test_a_community_model_saves_as_a_component_file_and_reloads(checkpoints, tmp_path):
    model = srframe.load_generator(checkpoints["rrdbnet_safetensors"])
    saved = srframe.save_component(model, tmp_path / "rrdbnet_x2.safetensors")
    again = srframe.load_generator(saved)
    assert again.srframe_built_from == model.srframe_built_from
    assert again.srframe_built_from.params == {"scale": 2, "in_channels": 3, "out_channels": 3, "num_filters": 8,
                                               "num_blocks": 2}
    lr = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        torch.testing.assert_close(again(lr), model(lr))


def test_an_architecture_without_a_named_generator_saves_as_spandrel(tmp_path):
    """OmniSR has no named generator: it is saved as ``spandrel`` with its non-default hyper-parameters."""
    state = spandrel_state("OmniSR", num_feat=16, up_scale=2, window_size=4, res_num=1, block_num=1)
    torch.save(state, tmp_path / "omnisr.pth")
    model = srframe.load_generator(tmp_path / "omnisr.pth")
    built = model.srframe_built_from
    assert built.name == "spandrel" and built.params["architecture"] == "OmniSR"
    again = srframe.load_generator(srframe.save_component(model, tmp_path / "omnisr.safetensors"))
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(again(lr), model(lr))


def test_named_generators_build_from_recipe_keys():
    rrdb = srframe.build("generator", "rrdbnet", scale=2, num_blocks=1, num_filters=8)
    assert rrdb.scale == 2 and rrdb(torch.rand(1, 3, 9, 7)).shape == (1, 3, 18, 14)  # padded to 4k inside
    with pytest.raises(RecipeError, match="num_heads"):
        srframe.build("generator", "swinir", depths=[1, 1], num_heads=[2])
    with pytest.raises(RecipeError, match="spandrel has no architecture 'HATT'.*HAT"):
        srframe.build("generator", "spandrel", architecture="HATT")
    with pytest.raises(RecipeError, match="spandrel cannot read back a HAT network built with"):
        srframe.build("generator", "spandrel", architecture="HAT",  # 12 maps / squeeze 30: no attention maps
                      hyperparameters={"embed_dim": 12, "depths": [1], "num_heads": [2], "window_size": 4})


def test_fp16_is_refused_for_an_architecture_spandrel_marks_unsafe(checkpoints, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(image)
    assert main(["upscale", str(image), "-o", str(tmp_path / "out"), "--model", str(checkpoints["swinir"]),
                 "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "fp16" in err and "SwinIR" in err and "bf16" in err


def test_unrecognised_weights_name_their_keys_and_the_hook(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"params": {"encoder.stem.weight": torch.zeros(4, 3, 3, 3), "head.bias": torch.zeros(4)}}, path)
    with pytest.raises(CheckpointError) as caught:
        srframe.load_generator(path)
    message = str(caught.value)
    assert "encoder.stem.weight [4, 3, 3, 3]" in message and "srframe_generator_from_state_dict" in message


def test_files_that_are_not_weights_are_refused_by_name(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 20)
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 3, 1)), tmp_path / "scripted.pt")
    for name, expected in (("notes.txt", "not a weights file"), ("list.pth", "holds a list"),
                           ("broken.safetensors", "not a valid safetensors file"),
                           ("scripted.pt", "TorchScript archive")):
        with pytest.raises(CheckpointError, match=expected):
            srframe.load_generator(tmp_path / name)


def rrdbnet_recipe(stage: dict, **generator) -> dict:
    """The tiny training recipe of train_helpers with a tiny RRDBNet as its generator."""
    data = recipe_data([stage])
    data["generator"] = {**TINY_RRDBNET, **generator}
    return data


class CreatesFile:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_pickle_that_would_run_code_is_refused_everywhere_and_runs_nothing(checkpoints, tmp_path, capsys):
    """As ``--model`` (upscale and eval), as a recipe's ``init_generator`` and as the VGG loss's weights."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "RealESRGAN_x4plus.pth"
    state = basicsr_rrdbnet()
    state["conv_first.weight"] = CreatesFile(marker)
    torch.save({"params_ema": state}, evil)
    pickle.loads(pickle.dumps(CreatesFile(tmp_path / "control")))  # the payload does work when unpickled
    assert (tmp_path / "control").exists()

    image = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(image)
    assert main(["upscale", str(image), "-o", str(tmp_path / "out"), "--model", str(evil)]) == 2
    assert "asks for io.open" in capsys.readouterr().err  # what open() pickles as
    assert main(["eval", str(evil), "--data", str(tmp_path), "--no-lpips"]) == 2
    with pytest.raises(CheckpointError, match="will not execute code"):
        srframe.load_generator(evil)

    recipe = write_recipe(tmp_path / "finetune.toml", rrdbnet_recipe(pixel_stage(steps=1, init_generator=str(evil))))
    assert main(["recipe", "check", str(recipe)]) == 2
    assert "init_generator" in capsys.readouterr().err

    with pytest.raises(srframe.errors.WeightsError, match="asks for io.open"):
        srframe.build("loss", "vgg", layers="relu1_1", backbone="vgg16", weights=str(evil))
    assert not marker.exists()


def test_a_recipe_fine_tunes_a_community_checkpoint_and_saves_in_srframe_format(checkpoints, tmp_path):
    from srframe.train.engine import run

    recipe_file = write_recipe(tmp_path / "finetune.toml", rrdbnet_recipe(
        pixel_stage(steps=2, init_generator=str(checkpoints["rrdbnet_params_ema"]))))
    run_dir = run(srframe.load_recipe(recipe_file), run_dir=tmp_path / "run")
    tuned = srframe.load_generator(run_dir)
    start = srframe.load_generator(checkpoints["rrdbnet_params_ema"])
    assert tuned.srframe_built_from.name == "rrdbnet" and tuned.srframe_built_from.params["num_blocks"] == 2
    before, after = start.net.state_dict(), tuned.net.state_dict()
    assert before.keys() == after.keys()
    moved = [key for key in before if not torch.equal(before[key], after[key])]
    assert moved and all((before[key] - after[key]).abs().max() < 0.05 for key in before)  # started from it


def test_a_recipe_whose_generator_does_not_match_the_checkpoint_is_refused_at_check(checkpoints, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "wrong.toml", rrdbnet_recipe(
        pixel_stage(steps=1, init_generator=str(checkpoints["rrdbnet_params_ema"])), num_blocks=3))
    assert main(["recipe", "check", str(recipe)]) == 2
    assert "num_blocks = 2 there, 3 here" in capsys.readouterr().err


def test_a_real_size_span_upscales_with_the_cpu_rewrites(tmp_path):
    """SPAN rebuilds its merged convolutions from its branches' weights at every eval call; with 48
    channels a branch qualifies for the NNPACK rewrite, which must keep exposing its weight."""
    torch.save(spandrel_state("SPAN", num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4), tmp_path / "span.pth")
    model = srframe.load_generator(tmp_path / "span.pth")
    lr = torch.rand(1, 3, 20, 18, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(lr).clamp(0, 1)
    torch.testing.assert_close(srframe.upscale(model, lr, tile=32), expected, atol=1e-4, rtol=0)


def test_spandrel_settings_are_checked_before_anything_is_built(tmp_path, capsys):
    from srframe.errors import RegistryError

    with pytest.raises(RecipeError, match='hyperparameters.embed_dimm: not a keyword of spandrel\'s HAT; did you mean "embed_dim"'):
        srframe.build("generator", "spandrel", architecture="HAT", hyperparameters={"embed_dimm": 12})
    with pytest.raises(RecipeError, match='no architecture \'hat\'; did you mean "HAT"'):
        srframe.build("generator", "spandrel", architecture="hat")
    with pytest.raises(RecipeError, match="LaMa takes a mask as well as an image"):
        srframe.build("generator", "spandrel", architecture="LaMa")
    hat = {"embed_dim": 30, "depths": [1], "num_heads": [2], "window_size": 4}
    with pytest.raises(RecipeError, match="build a x1 HAT, and the recipe's scale is 4"):
        srframe.build("generator", "spandrel", architecture="HAT", hyperparameters=hat, scale=4)
    with pytest.raises(RecipeError, match="spandrel's HAT cannot be built with these: RuntimeError: .*negative dimension"):
        srframe.build("generator", "spandrel", architecture="HAT", hyperparameters={**hat, "embed_dim": -5})
    recipe = recipe_data([pixel_stage(steps=1)])  # the same, from a recipe, at `srframe recipe check`
    recipe["generator"] = {"kind": "spandrel", "architecture": "HAT", "hyperparameters": hat}
    assert main(["recipe", "check", str(write_recipe(tmp_path / "hat.toml", recipe))]) == 2
    assert "build a x1 HAT, and the recipe's scale is 4" in capsys.readouterr().err
    with pytest.raises(RecipeError, match="embed_dim: must be a multiple of every head count"):
        srframe.build("generator", "swinir", embed_dim=10, depths=[1], num_heads=[3])
    with pytest.raises(RecipeError, match="depths: needs at least one group"):
        srframe.build("generator", "swinir", depths=[], num_heads=[])


def test_a_swinir_without_upsampler_saves_and_reloads(tmp_path):
    x1 = dict(SWINIR, upscale=1, upsampler="")
    torch.save(spandrel_state("SwinIR", **x1), tmp_path / "swinir_x1.pth")
    model = srframe.load_generator(tmp_path / "swinir_x1.pth")
    again = srframe.load_generator(srframe.save_component(model, tmp_path / "swinir_x1.safetensors"))
    assert again.scale == 1 and again.srframe_built_from.params["upsampler"] == ""


def test_a_spandrel_model_fine_tunes_whatever_defaults_the_recipe_spells_out(tmp_path, capsys):
    hat = {"embed_dim": 30, "depths": [1], "num_heads": [2], "window_size": 4, "upscale": 4}
    torch.save(spandrel_state("HAT", **hat), tmp_path / "hat_x4.pth")
    recipe = recipe_data([pixel_stage(steps=1, init_generator=str(tmp_path / "hat_x4.pth"))])
    recipe["generator"] = {"kind": "spandrel", "architecture": "HAT",
                           "hyperparameters": {**hat, "compress_ratio": 3, "mlp_ratio": 4.0}}  # HAT's defaults
    assert main(["recipe", "check", str(write_recipe(tmp_path / "ok.toml", recipe))]) == 0
    recipe["generator"]["hyperparameters"]["embed_dim"] = 60
    assert main(["recipe", "check", str(write_recipe(tmp_path / "wrong.toml", recipe))]) == 2
    assert "hyperparameters.embed_dim = 30 there, 60 here" in capsys.readouterr().err


def test_damaged_and_odd_files_say_what_is_wrong(tmp_path):
    import os

    good = tmp_path / "good.pth"
    torch.save({"params_ema": {}, "params": basicsr_rrdbnet()}, good)  # an empty params_ema falls back
    assert srframe.load_generator(good).scale == 4
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"cannot be read \(5000 bytes\).*damaged \(a truncated download\?\)"):
        srframe.load_generator(truncated)

    class System:
        def __reduce__(self):
            return os.system, ("true",)

    torch.save({"w": System()}, tmp_path / "system.pth")
    with pytest.raises(CheckpointError, match=r"asks for posix\.system.*would run code"):
        srframe.load_generator(tmp_path / "system.pth")
    model = srframe.load_generator(good)
    with pytest.raises(CheckpointError, match="it is a folder; give a file name"):
        srframe.save_component(model, tmp_path)


def test_eval_of_models_of_different_scales_names_them(checkpoints, tmp_path, capsys):
    Image.new("RGB", (48, 48)).save(tmp_path / "a.png")
    assert main(["eval", str(checkpoints["rrdbnet_safetensors"]), str(checkpoints["compact"]), "--data",
                 str(tmp_path), "--no-lpips"]) == 2
    assert "different factors (rrdbnet_x2_flat x2, compact_x4 x4)" in capsys.readouterr().err
