"""srframe.upscale's rules: memory by bands of rows, no inf/NaN written, the model's device, alpha
premultiplied, and images given to a model in the channels it takes (grey, RGB, or Y of YCbCr)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import srframe
from srframe.degrade import imresize
from srframe.errors import ArgumentError, InferenceError, SrframeError
from srframe.eval.metrics import rgb_to_y
from srframe.infer.tiles import upscale_tiled
from srframe.infer.channels import rgb_to_ycbcr, ycbcr_to_rgb
from srframe.infer.upscale import Upscaler
from srframe.interfaces import Generator


class Nearest(Generator):
    """A stand-in generator: nearest-neighbour upscaling times ``up`` times ``down`` (parameters, so the
    model has a device and a precision; 1e5 x 1e-5 is 1 in fp32 and inf in fp16)."""

    def __init__(self, scale: int = 2, channels: int = 3, up: float = 1.0, down: float = 1.0):
        super().__init__()
        self.scale, self.in_channels, self.out_channels = scale, channels, channels
        self.up, self.down = nn.Parameter(torch.tensor(up)), nn.Parameter(torch.tensor(down))
        self.seen: list[tuple[int, ...]] = []

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(lr.shape))
        return F.interpolate(lr, scale_factor=self.scale, mode="nearest") * self.up * self.down


class Bicubic(Nearest):
    """A stand-in generator that is the MATLAB bicubic, so a test is about the channels, not the network."""

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(lr.shape))
        return imresize(lr.float(), scale=self.scale).to(lr.dtype) * self.up


@pytest.fixture(scope="module")
def srresnet():
    torch.manual_seed(0)
    return srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8).eval()


def _untiled(model, lr):
    with torch.no_grad():
        return model(lr).clamp(0, 1)


# A. memory: rows are finished, converted and written band by band


def test_finished_rows_are_written_in_order_before_later_tiles_run(srresnet):
    lr = torch.rand(1, 3, 40, 23)
    events, blocks = [], []

    def model(windows):
        events.append("tile")
        return _untiled(srresnet, windows)

    def write(rows, block):
        events.append(("rows", rows.start, rows.stop))
        blocks.append(block.clone())

    assert upscale_tiled(model, lr, 2, tile=8, overlap=4, write=write) is None
    written = [e for e in events if e != "tile"]
    assert [e[1] for e in written] == [0] + [e[2] for e in written[:-1]] and written[-1][2] == 80  # contiguous
    # 5 rows of 3 tiles: each row's finished rows are written before the next row of tiles runs
    assert [e if e == "tile" else "rows" for e in events] == (["tile"] * 3 + ["rows"]) * 5
    assert max(stop - start for _, start, stop in written) <= (8 + 4) * 2  # a band: a row of tiles, no more
    whole = upscale_tiled(model, lr, 2, tile=8, overlap=4)
    assert torch.equal(torch.cat(blocks, dim=2), whole)


def test_uint8_output_is_the_rounded_float_output(srresnet):
    array = np.random.default_rng(4).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    sr = srframe.upscale(srresnet, array, tile=8, overlap=8, batch_size=2)
    as_float = srframe.upscale(srresnet, torch.from_numpy(array).permute(2, 0, 1).float() / 255, tile=8, overlap=8,
                               batch_size=2)
    assert sr.dtype == np.uint8
    assert np.array_equal(sr, np.clip(np.rint(as_float.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8))


def test_a_read_only_array_is_read_and_a_uint8_tensor_refused(srresnet):
    array = np.random.default_rng(5).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    array.flags.writeable = False
    assert srframe.upscale(srresnet, array).shape == (18, 22, 3)
    with pytest.raises(ArgumentError, match="a tensor image must be float in"):
        srframe.upscale(srresnet, torch.from_numpy(array.copy()).permute(2, 0, 1))


# B. non-finite output is never written


def test_activations_that_overflow_fp16_are_an_error_and_fp32_and_bf16_work():
    model = Nearest(up=1e5, down=1e-5)
    image = np.random.default_rng(6).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    with pytest.raises(InferenceError, match=r"non-finite value\(s\) \(inf/NaN\) in fp16: its activations overflowed "
                                             r"fp16 .* Use precision bf16 \(--precision bf16"):
        srframe.upscale(model, image, precision="fp16")
    expected = image.repeat(2, 0).repeat(2, 1)
    assert np.array_equal(srframe.upscale(model, image, precision="fp32"), expected)
    assert np.abs(srframe.upscale(model, image, precision="bf16").astype(int) - expected).max() <= 3


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_model_that_outputs_nan_is_an_error_in_every_precision(precision):
    model = Nearest(up=float("nan"))
    image = Image.new("RGB", (5, 4))
    with pytest.raises(InferenceError, match=f"in {precision}") as raised:
        Upscaler(model, precision=precision)(image)
    assert isinstance(raised.value, SrframeError)
    if precision == "fp32":
        assert "the model's weights are broken (1 of its parameter tensors hold inf/NaN" in str(raised.value)


def test_upscale_tiled_checks_any_model_output_and_the_input_is_checked_too():
    def model(windows):
        out = windows.repeat_interleave(2, -1).repeat_interleave(2, -2)
        if windows.shape[-1] < 8:  # the second tile
            out[0, 0, 0, 0] = float("inf")
        return out

    with pytest.raises(InferenceError, match=r"the tile at LR \(0, 8\) has 1 non-finite"):
        upscale_tiled(model, torch.rand(1, 1, 5, 13), 2, tile=8, overlap=0)
    with pytest.raises(ArgumentError, match="the image holds inf or NaN values"):
        srframe.upscale(Nearest(), torch.full((3, 4, 4), float("nan")))


def test_nothing_is_written_when_the_output_is_not_finite(tmp_path):
    from srframe.infer.files import upscale_files

    Image.new("RGB", (6, 5), (200, 10, 10)).save(tmp_path / "in.png")
    with pytest.raises(InferenceError):
        upscale_files(Nearest(up=1e5, down=1e-5), [tmp_path / "in.png"], tmp_path / "out", precision="fp16")
    assert not list((tmp_path / "out").glob("*.png"))


# C. the model's device


def test_device_cpu_given_explicitly_gives_the_same_results(srresnet):
    array = np.random.default_rng(7).integers(0, 256, (10, 9, 3), dtype=np.uint8)
    tensor = torch.rand(3, 10, 9)
    upscaler = Upscaler(srresnet, tile=4, overlap=8, device="cpu")
    assert upscaler.device == torch.device("cpu")
    assert np.array_equal(upscaler(array), srframe.upscale(srresnet, array, tile=4, overlap=8))
    assert np.array_equal(np.asarray(upscaler(Image.fromarray(array))), upscaler(array))
    assert torch.equal(srframe.upscale(srresnet, tensor, tile=4, overlap=8, device=torch.device("cpu")),
                       srframe.upscale(srresnet, tensor, tile=4, overlap=8))


@pytest.mark.parametrize("device, message", [("nonsense", "device must be a torch device such as 'cpu', 'cuda'"),
                                             ("cuda:99", "cuda:99")])
def test_a_device_torch_cannot_use_is_an_argument_error(srresnet, device, message):
    with pytest.raises(ArgumentError, match=message):
        Upscaler(srresnet, device=device)
    with pytest.raises(ArgumentError, match=message):
        srframe.upscale(srresnet, torch.rand(3, 4, 4), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message on a machine without CUDA")
def test_cuda_asked_for_without_a_gpu_says_so(srresnet):
    with pytest.raises(ArgumentError, match="torch finds no CUDA GPU here"):
        Upscaler(srresnet, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_model_upscales_cpu_tensors_numpy_and_pil_images(srresnet):
    array = np.random.default_rng(8).integers(0, 256, (21, 19, 4), dtype=np.uint8)
    tensor = torch.rand(2, 3, 21, 19)
    on_cpu = Upscaler(srresnet, tile=8, overlap=8)
    on_gpu = Upscaler(srresnet, tile=8, overlap=8, device="cuda")
    assert next(srresnet.parameters()).device.type == "cpu"  # the caller's model stays where it was
    cuda_model = Upscaler(srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8).cuda(), tile=8,
                          overlap=8)
    assert cuda_model.device.type == "cuda"
    for upscaler in (on_gpu, cuda_model):
        sr = upscaler(tensor)
        assert sr.device.type == "cpu" and sr.shape == (2, 3, 42, 38)
        on_device = upscaler(tensor.cuda())
        assert on_device.device.type == "cuda"
        assert (on_device.cpu() - sr).abs().max() < 1e-4
    # CUDA convolutions may use TF32: close to the CPU's float32, not equal
    assert (on_gpu(tensor) - on_cpu(tensor)).abs().max() < 5e-3
    rgb = np.ascontiguousarray(array[..., :3])
    assert np.abs(on_gpu(rgb).astype(int) - on_cpu(rgb)).max() <= 2
    assert np.abs(on_gpu(array[..., 0]).astype(int) - on_cpu(array[..., 0])).max() <= 2
    pil, expected = on_gpu(Image.fromarray(array)), on_cpu(array)
    assert pil.mode == "RGBA" and pil.size == (38, 42)
    rgba = np.asarray(pil).astype(int)
    visible = expected[..., 3] >= 64  # colour is divided by alpha: compared where that does not magnify
    assert np.abs(rgba[..., 3] - expected[..., 3]).max() <= 2
    assert np.abs(rgba[..., :3] - expected[..., :3])[visible].max() <= 2


# D. alpha: colour premultiplied, so edges keep their colour


def _red_square() -> np.ndarray:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)  # transparent black
    rgba[4:12, 4:12] = (255, 0, 0, 255)  # an opaque red square
    return rgba


def test_an_opaque_red_square_on_transparent_black_keeps_its_red_at_the_edges():
    rgba = _red_square()
    sr = srframe.upscale(Bicubic(scale=4), rgba)
    alpha = sr[..., 3]
    edge = (alpha >= 128) & (alpha < 255)
    assert edge.sum() > 0
    assert sr[..., 0][edge].min() >= 240 and sr[..., 0][alpha > 0].min() >= 250
    assert sr[..., 1:3][alpha > 0].max() == 0
    assert sr[..., :3][alpha == 0].max() == 0  # fully transparent pixels: colour 0
    # what the colour alone gives: red darkened at the edges (the halo this rule removes)
    unpremultiplied = imresize(torch.from_numpy(rgba[..., 0] / 255.0).float(), scale=4, clamp=True).numpy() * 255
    assert unpremultiplied[edge].min() < 200


@pytest.mark.parametrize("channels", [3, 1])
def test_grey_with_a_semi_transparent_gradient_keeps_its_grey(channels):
    la = np.zeros((12, 20, 2), dtype=np.uint8)
    la[:, 8:, 0] = 200  # grey 200 where visible, black where transparent
    la[:, 8:, 1] = np.linspace(40, 255, 12).astype(np.uint8)  # alpha rising from 40 to 255
    sr = srframe.upscale(Bicubic(scale=2, channels=channels), Image.fromarray(la, mode="LA"))
    assert sr.mode == "LA"
    grey, alpha = np.asarray(sr)[..., 0].astype(int), np.asarray(sr)[..., 1]
    assert np.abs(grey[alpha >= 16] - 200).max() <= 1


def test_premultiplied_alpha_goes_through_the_tiles(srresnet):
    rgba = np.random.default_rng(9).integers(0, 256, (23, 17, 4), dtype=np.uint8)
    tiled = srframe.upscale(srresnet, rgba, tile=8, overlap=16)
    whole = srframe.upscale(srresnet, rgba, tile=64)
    assert np.abs(tiled.astype(int) - whole).max() <= 1


# E. the channels a model takes


def test_a_one_channel_model_takes_grey_images_as_they_are():
    model = srframe.build("generator", "srresnet", scale=2, in_channels=1, out_channels=1, num_blocks=1, channels=8)
    model.eval()
    grey = np.random.default_rng(10).integers(0, 256, (9, 13), dtype=np.uint8)
    sr = srframe.upscale(model, grey, tile=64)
    assert sr.shape == (18, 26) and sr.dtype == np.uint8
    expected = _untiled(model, torch.from_numpy(grey).float().div(255)[None, None])[0, 0].numpy()
    assert np.abs(sr.astype(int) - np.rint(expected * 255)).max() <= 1
    la = srframe.upscale(model, Image.fromarray(np.stack([grey, np.full_like(grey, 255)], -1), mode="LA"))
    assert la.mode == "LA" and np.abs(np.asarray(la)[..., 0].astype(int) - sr).max() <= 1


def test_a_one_channel_model_takes_the_y_of_an_rgb_image():
    model = Bicubic(scale=2, channels=1)
    y, x = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 18), indexing="ij")
    rgb = torch.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.5 * x * y])  # smooth: the bicubic never clamps
    sr = srframe.upscale(model, rgb)
    assert sr.shape == (3, 28, 36) and all(shape[1] == 1 for shape in model.seen)
    # Y by the model, Cb and Cr by the bicubic: with the bicubic as the model, the RGB bicubic
    assert (sr - imresize(rgb[None], scale=2, clamp=True)[0]).abs().max() < 1e-5
    rgba = np.random.default_rng(11).integers(0, 256, (7, 9, 4), dtype=np.uint8)
    assert srframe.upscale(model, rgba).shape == (14, 18, 4)


def test_a_one_channel_srresnet_on_rgb_gives_its_y_and_bicubic_chroma():
    torch.manual_seed(1)
    model = srframe.build("generator", "srresnet", scale=2, in_channels=1, out_channels=1, num_blocks=1, channels=8)
    model.eval()
    rgb = torch.rand(1, 3, 10, 12) * 0.5 + 0.25
    sr = srframe.upscale(model, rgb, tile=64)
    ycbcr = rgb_to_ycbcr(rgb)
    expected = ycbcr_to_rgb(torch.cat([_untiled(model, ycbcr[:, :1]),
                                        imresize(ycbcr[:, 1:], scale=2, clamp=True)], dim=1))
    assert (sr - expected).abs().max() < 1e-5


def test_ycbcr_is_matlabs_and_its_y_is_the_metrics_y():
    rgb = torch.rand(2, 3, 5, 6)
    ycbcr = rgb_to_ycbcr(rgb)
    assert torch.allclose(ycbcr[:, :1] * 255, rgb_to_y(rgb), atol=1e-4)
    assert torch.allclose(rgb_to_ycbcr(torch.ones(1, 3, 1, 1)).flatten() * 255, torch.tensor([235.0, 128, 128]),
                          atol=1e-3)
    assert torch.allclose(ycbcr_to_rgb(ycbcr), rgb, atol=1e-5)


def test_grey_goes_to_an_rgb_model_as_three_equal_channels():
    model = Nearest(scale=2)
    grey = np.random.default_rng(12).integers(0, 256, (5, 6), dtype=np.uint8)
    assert np.array_equal(srframe.upscale(model, grey), grey.repeat(2, 0).repeat(2, 1))
    assert all(shape[1] == 3 for shape in model.seen)


@pytest.mark.parametrize("takes, gives, message", [(4, 4, "takes 4 input channels; images can be upscaled with "
                                                           "models that take 1"),
                                                   (3, 1, "takes 3 channel\\(s\\) but gives 1")])
def test_a_model_of_other_channels_is_an_argument_error(takes, gives, message):
    model = Nearest()
    model.in_channels, model.out_channels = takes, gives
    with pytest.raises(ArgumentError, match=message):
        srframe.upscale(model, np.zeros((4, 4, 3), dtype=np.uint8))


class _BicubicModel(torch.nn.Module):
    """The MATLAB bicubic as a 'model': for an exact stand-in, alpha handling alone decides the result."""

    scale, in_channels, out_channels = 4, 3, 3

    def __init__(self, channels: int = 3):
        super().__init__()
        self.in_channels = self.out_channels = channels
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return imresize(x, scale=4)


@pytest.mark.parametrize("channels, colour", [(4, (100, 150, 200)), (2, (200,))])
def test_flat_colour_under_alpha_stays_flat_where_the_alpha_overshoots(channels, colour):
    image = np.zeros((24, 24, channels), np.uint8)
    image[6:18, 6:18] = (*colour, 255)
    model = _BicubicModel(3 if channels == 4 else 1)
    out = srframe.upscale(model, image, optimize=False)
    seen = out[out[..., -1] >= 1][:, :-1]  # every pixel not fully transparent
    assert (seen == np.array(colour, dtype=np.uint8)).all(), (seen.min(0), seen.max(0))  # no bright or dark halo


@pytest.mark.parametrize("image", [torch.rand(3, 8, 8) * 255, np.random.default_rng(0).random((8, 8, 3)) * 1.3,
                                   torch.rand(3, 8, 8) - 0.5])
def test_float_images_outside_0_to_1_are_refused_not_clamped(image):
    with pytest.raises(ArgumentError, match="float images must be in \\[0, 1\\]"):
        srframe.upscale(Bicubic(scale=2), image)
