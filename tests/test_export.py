"""`srframe export` and srframe.export: ONNX and torch.export files that compute what the torch model does,
at sizes other than the one traced, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import srframe
from srframe.cli import main
from srframe.errors import ArgumentError
from srframe.export import ExportError, check_onnx, export_onnx, export_program, format_of
from srframe.interfaces import Generator
from srframe.ops import bias_prelu

NO_EXTRA = "the export extra is not installed (pip install 'srframe[export]')"
onnxruntime = pytest.importorskip("onnxruntime", reason=NO_EXTRA)
pytest.importorskip("onnxscript", reason=NO_EXTRA)

SIZES = [(1, 3, 13, 21), (2, 3, 30, 17)]  # neither the traced size nor the check sizes of the export itself


@pytest.fixture(scope="module")
def srresnet():
    """A tiny SRResNet x2 (its upsampler is srframe's custom op pixel_shuffle_prelu), batch norm statistics
    moved off their initial values."""
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 12, 12))
    return model.eval()


@pytest.fixture(scope="module")
def srresnet_file(srresnet, tmp_path_factory) -> Path:
    return srframe.save_component(srresnet, tmp_path_factory.mktemp("model") / "srresnet_x2.safetensors")


def onnx_output(path: Path, lr: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["sr"], {"lr": lr.numpy()})[0]


def torch_output(model, lr: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(lr).numpy()


def test_the_cli_writes_an_onnx_file_equal_to_torch_at_two_sizes(srresnet, srresnet_file, tmp_path, capsys):
    out = tmp_path / "srresnet_x2.onnx"
    assert main(["export", str(srresnet_file), "-o", str(out)]) == 0
    summary = capsys.readouterr().out
    assert f"{out}: ONNX opset 20, fp32" in summary
    assert "input lr (batch, 3, height, width) -> output sr (batch, 3, 2*height, 2*width)" in summary
    assert "checked with onnxruntime" in summary and "1x3x29x43" in summary and "2x3x48x32" in summary
    for shape in SIZES:
        lr = torch.rand(shape)
        assert np.abs(onnx_output(out, lr) - torch_output(srresnet, lr)).max() < 1e-4
    assert not list(tmp_path.glob(".*partial*"))


def test_python_export_onnx_reports_its_checks_and_names_the_axes(srresnet, tmp_path):
    report = export_onnx(srresnet, tmp_path / "m.onnx", opset=17, sizes=[(9, 14), (20, 11)])
    assert report.format == "onnx" and report.opset == 17 and report.precision == "fp32"
    assert report.dynamic_axes == ("batch", "height", "width")
    assert report.output_shape == ("batch", 3, "2*height", "2*width")
    assert [check.shape for check in report.checks] == [(1, 3, 9, 14), (2, 3, 20, 11)]
    assert all(check.max_abs_diff < 1e-4 for check in report.checks)
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [(v.name, v.shape) for v in session.get_inputs()] == [("lr", ["batch", 3, "height", "width"])]
    assert session.get_modelmeta().custom_metadata_map["srframe.scale"] == "2"
    import onnx

    assert [o.version for o in onnx.load(str(report.path)).opset_import if o.domain == ""] == [17]
    assert srresnet.training is False and next(srresnet.parameters()).dtype == torch.float32  # left as it was


def test_a_torch_export_program_round_trips(srresnet, srresnet_file, tmp_path, capsys):
    out = tmp_path / "srresnet_x2.pt2"
    assert main(["export", str(srresnet_file), "-o", str(out)]) == 0
    assert "torch.export program, fp32" in capsys.readouterr().out
    program = torch.export.load(str(out))
    assert "srframe" not in str(program.graph)  # the custom op decomposed: runs without srframe
    for shape in SIZES:
        lr = torch.rand(shape)
        with torch.no_grad():
            assert np.abs(program.module()(lr).numpy() - torch_output(srresnet, lr)).max() < 1e-4


def test_fp16_onnx_is_checked_against_the_fp32_model(srresnet, tmp_path):
    report = export_onnx(srresnet, tmp_path / "half.onnx", precision="fp16")
    assert report.precision == "fp16" and report.tolerance == 2e-2
    lr = torch.rand(1, 3, 11, 15)
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    out = session.run(["sr"], {"lr": lr.numpy().astype(np.float16)})[0]
    assert out.dtype == np.float16
    assert np.abs(out.astype(np.float32) - torch_output(srresnet, lr)).max() < 2e-2


class Wrapped(Generator):
    """A spandrel architecture behind srframe's Generator interface, as a plugin would wrap it."""

    def __init__(self, net: torch.nn.Module, scale: int):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr)


def compact():
    from spandrel.architectures.Compact import Compact  # SRVGGNetCompact

    torch.manual_seed(0)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=2, upscale=4, act_type="prelu").eval()


def test_a_spandrel_network_exports_to_onnx(tmp_path):
    model = Wrapped(compact(), scale=4).eval()
    report = export_onnx(model, tmp_path / "compact.onnx")
    assert report.output_shape == ("batch", 3, "4*height", "4*width")
    for shape in SIZES:
        lr = torch.rand(shape)
        assert np.abs(onnx_output(report.path, lr) - torch_output(model, lr)).max() < 1e-4


def test_a_community_checkpoint_exports_through_the_cli(tmp_path, capsys):
    """A Real-ESRGAN compact .pth as another project saves it, loaded by srframe.load_generator."""
    torch.save(compact().state_dict(), tmp_path / "compact.pth")
    model = srframe.load_generator(tmp_path / "compact.pth")
    for suffix in (".onnx", ".pt2"):
        out = tmp_path / f"compact{suffix}"
        assert main(["export", str(tmp_path / "compact.pth"), "-o", str(out)]) == 0
        for shape in SIZES:
            lr = torch.rand(shape)
            if suffix == ".onnx":
                got = onnx_output(out, lr)
            else:
                with torch.no_grad():
                    got = torch.export.load(str(out)).module()(lr).numpy()
            assert np.abs(got - torch_output(model, lr)).max() < 1e-4
    assert "dynamic axes: batch, height, width" in capsys.readouterr().out


def test_an_onnx_file_that_differs_from_the_model_is_refused(srresnet, tmp_path):
    export_onnx(srresnet, tmp_path / "m.onnx", check=False)
    other = srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8).eval()
    with pytest.raises(ExportError, match=r"differs from .* above the tolerance 1e-04"):
        check_onnx(tmp_path / "m.onnx", other)
    with pytest.raises(ExportError, match=r"above the tolerance 1e-15 .*m2.onnx not written \(--no-check"):
        export_onnx(srresnet, tmp_path / "m2.onnx", tolerance=1e-15)
    assert not (tmp_path / "m2.onnx").exists() and not list(tmp_path.glob(".*partial*"))


class DataDependent(Generator):
    """A forward that branches on pixel values: torch.export cannot capture that."""

    scale = 1

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return lr if lr.max() > 0.5 else lr * 2


def test_a_model_the_exporter_cannot_trace_is_one_error_naming_it(tmp_path):
    with pytest.raises(ExportError, match=r"generator DataDependent cannot be exported with torch.export .*: \w+"):
        export_program(DataDependent(), tmp_path / "m.pt2")
    assert not list(tmp_path.iterdir())


def test_the_format_comes_from_the_suffix_or_format():
    assert format_of("a/m.onnx") == "onnx" and format_of("m.PT2") == "pt2" and format_of("m.bin", "pt2") == "pt2"
    with pytest.raises(ArgumentError, match="names an ONNX file by its suffix, but --format is pt2"):
        format_of("m.onnx", "pt2")


@pytest.mark.parametrize("argv, message", [
    (["-o", "{tmp}/m.bin"], "cannot tell the export format from the suffix '.bin'; name the file .onnx"),
    (["-o", "{tmp}/m.onnx", "--opset", "15"], "--opset 15 is not one torch.onnx writes: give 16 to 23"),
    (["-o", "{tmp}/m.onnx", "--opset", "99"], "--opset 99 is not one torch.onnx writes"),
    (["-o", "{tmp}/m.pt2", "--opset", "18"], "--opset is for ONNX files"),
    (["-o", "{tmp}/m.onnx", "--check-size", "0", "5"], "a check size is (height, width) in LR pixels, both >= 1"),
    (["-o", "{tmp}/m.onnx", "--atol", "0"], "the tolerance must be > 0"),
    (["-o", "{tmp}", "--format", "onnx"], "is a folder; give a file name"),
])
def test_bad_command_lines_are_one_line_errors(srresnet_file, tmp_path, capsys, argv, message):
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(["export", str(srresnet_file), *argv]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir()]


def test_a_missing_model_file_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "no such file or run directory" in err and "nope.safetensors" in err and "Traceback" not in err


def test_a_missing_package_names_the_extra(srresnet, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a))
    with pytest.raises(ExportError, match=r"needs onnxruntime, which is not installed: pip install 'srframe\[export\]"):
        export_onnx(srresnet, tmp_path / "m.onnx")
    export_onnx(srresnet, tmp_path / "m.onnx", check=False)  # writing needs no onnxruntime


class Unshuffled(Generator):
    """Takes only even sizes (pixel_unshuffle by 2, no padding): traceable at the even size only."""

    scale = 1

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(12, 12, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_shuffle(self.conv(torch.nn.functional.pixel_unshuffle(lr, 2)), 2)


def test_a_model_taking_only_even_sizes_exports_and_is_checked_at_sizes_it_takes(tmp_path):
    model = Unshuffled().eval()
    report = export_program(model, tmp_path / "even.pt2", sizes=[(32, 48), (18, 26)])
    assert report.dynamic_axes == ("batch", "height", "width") and report.checks[1].shape == (2, 3, 18, 26)
    with pytest.raises(ExportError, match=r"Unshuffled itself fails on a 1x3x29x43 input: .* \(--check-size H W\)"):
        export_program(model, tmp_path / "odd.pt2")  # the default sizes: one is odd
    assert not list(tmp_path.glob("*odd*")) and not list(tmp_path.glob(".*partial*"))


def test_a_model_giving_nan_is_not_compared(tmp_path):
    model = Unshuffled().eval()
    with torch.no_grad():
        model.conv.bias.fill_(float("nan"))
    with pytest.raises(ExportError, match="itself gives inf or NaN on a 1x3x48x32 input in fp32"):
        export_program(model, tmp_path / "nan.pt2", sizes=[(48, 32)])


class Epilogue(Generator):
    """Uses srframe's other custom op, bias_prelu (the fused conv epilogue)."""

    scale = 1

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bias = torch.nn.Parameter(torch.randn(3))
        self.slopes = torch.nn.Parameter(torch.rand(3))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return bias_prelu(self.conv(lr), self.bias, self.slopes)


def test_srframe_custom_ops_become_plain_onnx(tmp_path):
    import onnx

    report = export_onnx(Epilogue().eval(), tmp_path / "epilogue.onnx")
    assert all(check.max_abs_diff < 1e-5 for check in report.checks)
    assert {node.domain for node in onnx.load(str(report.path)).graph.node} <= {""}  # standard ONNX ops only


def test_export_keeps_existing_files_and_never_replaces_the_model(tmp_path, capsys):
    from srframe.cli import main

    model = srframe.save_component(srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8),
                                   tmp_path / "tiny.safetensors")
    before = model.read_bytes()
    assert main(["export", str(model), "-o", str(model), "--format", "pt2", "--no-check", "--overwrite"]) == 2
    assert "is the model being exported" in capsys.readouterr().err and model.read_bytes() == before
    photo = tmp_path / "photo.onnx"
    photo.write_bytes(b"mine")
    assert main(["export", str(model), "-o", str(photo), "--no-check"]) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err and photo.read_bytes() == b"mine"


def test_fp16_export_is_refused_for_a_model_that_does_not_run_in_fp16(tmp_path):
    from srframe.errors import ArgumentError

    swinir = srframe.build("generator", "swinir", embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                           img_size=16, scale=2)
    with pytest.raises(ArgumentError, match=r"does not run in fp16 \(it runs in fp32, bf16\)"):
        export_onnx(swinir, tmp_path / "swinir.onnx", precision="fp16")


def test_span_exports_with_its_reparameterised_convolutions_folded(tmp_path):
    """SPAN rebuilds each Conv3XC's eval_conv from its branches at every eval call (untraceable `.data`
    assignments); prepare_for_export folds them once, on the exported copy only."""
    span = srframe.build("generator", "span", feature_channels=16)
    report = export_onnx(span, tmp_path / "span.onnx", sizes=[(29, 43), (48, 32)])
    assert report.dynamic_axes and all(check.max_abs_diff <= 1e-4 for check in report.checks)
    span.train()  # the original keeps training through its branches
    assert span.net.conv_1.forward.__func__ is type(span.net.conv_1).forward
