"""srframe.ops: the Triton kernels against the plain-torch reference, the modes, and the inference rewrites.

The ``test_kernel_*`` tests run the Triton kernels: on CUDA when there is a GPU, else in a child
pytest with ``TRITON_INTERPRET=1`` (which must be set before the kernels load), started by
``test_triton_interpreter_runs_the_kernel_tests``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import srframe
from srframe import ops
from srframe.ops import epilogue, modes, subpixel

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu" if INTERPRETING else None
COMPILE_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # on CUDA, compiled code calls the kernels
CHANNELS_LAST = torch.channels_last


@pytest.fixture
def device() -> str:
    """The device the kernel tests run on, with the ops in ``fused`` mode."""
    if KERNEL_DEVICE is None:
        pytest.skip("no GPU: these run under TRITON_INTERPRET=1 in test_triton_interpreter_runs_the_kernel_tests")
    with ops.use_mode("fused"):
        yield KERNEL_DEVICE


def _inputs(batch, channels, scale, height, width, slopes, layout=torch.contiguous_format,
            dtype=torch.float32, device="cpu"):
    generator = torch.Generator().manual_seed(batch * 100 + channels * 10 + scale + slopes)
    x = torch.randn(batch, channels * scale**2, height, width, generator=generator, dtype=dtype)
    weight = torch.rand(slopes, generator=generator, dtype=dtype) - 0.3  # some negative slopes too
    x = x.to(device).contiguous(memory_format=layout).requires_grad_()
    return x, weight.to(device).requires_grad_()


def _assert_slope_grads_close(grad_w, x, grad, scale, rel):
    """Slope gradients are sums: compare with the float64 sum within ``rel`` of the sum of the absolute
    terms, plus the final rounding to ``grad_w``'s dtype."""
    y = F.pixel_shuffle(x.detach().double(), scale)
    terms = grad.double() * y * (y <= 0)
    dims = (0, 2, 3) if grad_w.numel() > 1 else tuple(range(terms.dim()))
    exact, size = terms.sum(dims), terms.abs().sum(dims)
    tolerance = rel * size + torch.finfo(grad_w.dtype).eps * exact.abs()
    assert torch.all((grad_w.double().reshape(exact.shape) - exact).abs() <= tolerance), (grad_w, exact)


# --- the Triton kernels (CUDA, or the interpreter on the CPU) ---------------------------------------

@pytest.mark.parametrize("batch, height, width", [(1, 5, 7), (3, 3, 1)])
@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("slopes", [1, 3], ids=["one_slope", "per_channel"])
def test_kernel_matches_reference_fp32(device, batch, height, width, scale, layout, slopes):
    x, weight = _inputs(batch, 3, scale, height, width, slopes, layout, device=device)
    out = ops.pixel_shuffle_prelu(x, weight, scale)
    expected = F.prelu(F.pixel_shuffle(x, scale), weight)
    assert torch.equal(out, expected)
    assert out.is_contiguous(memory_format=layout)
    grad = torch.randn_like(out)
    grad_x, grad_w = torch.autograd.grad(out, (x, weight), grad)
    expected_x, _ = torch.autograd.grad(expected, (x, weight), grad)
    assert torch.equal(grad_x, expected_x)
    assert grad_x.stride() == x.stride()
    _assert_slope_grads_close(grad_w, x, grad, scale, rel=1e-6)


def _assert_eager_path_and_registered_op_agree(x, weight):
    """Eager calls take an autograd.Function, traced code the registered op: same values and gradients."""
    eager = ops.pixel_shuffle_prelu(x, weight, 2)
    registered = torch.ops.srframe.pixel_shuffle_prelu.default(x, weight, 2)
    assert torch.equal(eager, registered)
    grad = torch.randn_like(eager)
    for a, b in zip(torch.autograd.grad(eager, (x, weight), grad), torch.autograd.grad(registered, (x, weight), grad)):
        assert torch.equal(a, b)


def test_kernel_registered_op_and_eager_path_agree(device):
    _assert_eager_path_and_registered_op_agree(*_inputs(2, 3, 2, 5, 6, 3, device=device))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "channels_last"])
def test_kernel_matches_reference_half_precision(device, dtype, layout):
    x, weight = _inputs(2, 4, 2, 6, 5, 4, layout, dtype=dtype, device=device)
    out = ops.pixel_shuffle_prelu(x, weight, 2)
    grad = torch.randn_like(out)
    grad_x, grad_w = torch.autograd.grad(out, (x, weight), grad)
    with ops.use_mode("reference"):
        expected = ops.pixel_shuffle_prelu(x, weight, 2)
        expected_x, _ = torch.autograd.grad(expected, (x, weight), grad)
    assert out.dtype == grad_x.dtype == grad_w.dtype == dtype
    # One rounding of the same float32 product either way; but Triton's interpreter truncates
    # float32 -> bfloat16 where GPUs round to nearest, so there allow one bfloat16 step.
    ulp = 2**-7 if INTERPRETING and dtype == torch.bfloat16 else 0
    assert torch.allclose(out, expected, rtol=ulp, atol=0)
    assert torch.allclose(grad_x, expected_x, rtol=ulp, atol=0)
    _assert_slope_grads_close(grad_w, x, grad, 2, rel=1e-6)  # float32 sums, closer than the reference's


def test_kernel_takes_any_gradient_layout(device):
    x, weight = _inputs(2, 3, 2, 4, 5, 3, device=device)
    grad_x, grad_w = torch.autograd.grad(ops.pixel_shuffle_prelu(x, weight, 2).sum(), (x, weight))  # stride-0 grad
    expected_x, expected_w = torch.autograd.grad(F.prelu(F.pixel_shuffle(x, 2), weight).sum(), (x, weight))
    assert torch.equal(grad_x, expected_x)
    assert torch.allclose(grad_w, expected_w, rtol=1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("slopes", [1, 5], ids=["one_slope", "per_channel"])
def test_kernel_bias_prelu_matches_reference(device, layout, slopes):
    generator = torch.Generator().manual_seed(slopes)
    y = torch.randn(3, 5, 7, 9, generator=generator).to(device).contiguous(memory_format=layout)
    bias, weight = torch.randn(5, generator=generator).to(device), torch.rand(slopes, generator=generator).to(device)
    out = ops.bias_prelu(y, bias, weight)
    assert torch.equal(out, F.prelu(y + bias.view(1, -1, 1, 1), weight))
    assert out.is_contiguous(memory_format=layout)


def test_kernel_path_in_an_optimised_srresnet(device, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare float32 convolutions, not TF32
    model = _srresnet_with_batch_statistics().to(device).eval()
    lr = torch.rand(2, 3, 7, 6, device=device)
    with torch.no_grad():
        assert torch.allclose(ops.optimize_for_inference(model)(lr), model(lr), atol=1e-4)


# --- running the kernel tests where no GPU is ------------------------------------------------------

@pytest.mark.skipif(KERNEL_DEVICE is not None, reason="the kernel tests run in this process")
def test_triton_interpreter_runs_the_kernel_tests():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "SRFRAME_OPS": "fused"}
    result = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-k", "test_kernel_",
                             "-p", "no:cacheprovider"],
                            cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary


def _compile_for_hopper(kernel, constants: dict) -> str:
    """Compile a kernel for sm_90 without a GPU (what the interpreter never checks); return its PTX."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature = {name: "constexpr" if name in constants else "*fp32" if name == "part_ptr"
                 else "*bf16" if name.endswith("_ptr") else "i32" for name in names}
    source = ASTSource(kernel, signature, constexprs={(names.index(k),): v for k, v in constants.items()},
                       attrs={(i,): [["tt.divisibility", 16]] for i, name in enumerate(names) if name not in constants})
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm["ptx"]


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETING, reason="the interpreter does not compile kernels")
def test_triton_kernels_compile_for_hopper_with_wide_accesses():
    tk = pytest.importorskip("srframe.ops.triton_kernels")
    unit = {"w_stride": 1, "BLOCK_M": 64}
    cases = [
        (tk._pairs_fwd, {**unit, "sx_w": 1, "so_w": 1, "BLOCK_W": 16}),
        (tk._pairs_bwd, {**unit, "sx_w": 1, "sg_w": 1, "sgx_w": 1, "BLOCK_W": 16}),
        (tk._shuffle_prelu_fwd, {**unit, "sx_w": 1, "so_w": 1, "R": 3, "CL": False, "HAS_BIAS": False, "BLOCK_N": 32}),
        (tk._shuffle_prelu_fwd, {**unit, "sx_c": 1, "so_c": 1, "R": 1, "CL": True, "HAS_BIAS": True, "BLOCK_N": 64}),
        (tk._shuffle_prelu_bwd, {**unit, "sx_c": 1, "sg_c": 1, "sgx_c": 1, "R": 2, "CL": True, "BLOCK_N": 64}),
    ]
    ptx = [_compile_for_hopper(kernel, constants) for kernel, constants in cases]
    assert all("st.global.v4" in text for text in ptx[:2] + ptx[3:4])  # 16-byte stores
    assert "ld.global.v4" in ptx[0] and "ld.global.v4" in ptx[3]  # 16-byte loads where the input is contiguous


# --- the reference, the op's registration, the modes -----------------------------------------------

@pytest.mark.parametrize("scale, slopes, layout", [(2, 1, torch.contiguous_format), (3, 2, torch.contiguous_format),
                                                   (2, 2, CHANNELS_LAST)])
def test_reference_gradcheck_float64(scale, slopes, layout):
    x, weight = _inputs(2, 2, scale, 3, 4, slopes, layout, dtype=torch.float64)
    with ops.use_mode("reference"):
        assert torch.autograd.gradcheck(lambda a, w: ops.pixel_shuffle_prelu(a, w, scale), (x, weight))


def test_reference_keeps_the_input_layout():
    x, weight = _inputs(1, 2, 2, 3, 5, 2, CHANNELS_LAST)
    with ops.use_mode("reference"):
        out = ops.pixel_shuffle_prelu(x, weight, 2)
    assert out.is_contiguous(memory_format=CHANNELS_LAST) and not out.is_contiguous()
    assert torch.equal(out, F.prelu(F.pixel_shuffle(x, 2), weight))


def test_torch_compile_fullgraph_through_the_op():
    x, weight = _inputs(2, 3, 2, 5, 3, 3, device=COMPILE_DEVICE)

    def loss(a, w):
        return (ops.pixel_shuffle_prelu(a, w, 2) ** 2).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")  # fails on any graph break
    value = compiled(x, weight)
    grads = torch.autograd.grad(value, (x, weight))
    expected = (F.prelu(F.pixel_shuffle(x, 2), weight) ** 2).sum()
    expected_grads = torch.autograd.grad(expected, (x, weight))
    assert torch.allclose(value, expected)
    assert all(torch.allclose(g, e, rtol=1e-5, atol=1e-6) for g, e in zip(grads, expected_grads))


@pytest.mark.slow
def test_torch_compile_inductor_runs_the_op():
    x, weight = _inputs(1, 2, 2, 4, 4, 2, device=COMPILE_DEVICE)
    compiled = torch.compile(lambda a, w: ops.pixel_shuffle_prelu(a, w, 2) + 1, fullgraph=True)
    assert torch.allclose(compiled(x, weight), F.prelu(F.pixel_shuffle(x, 2), weight) + 1)


def test_torch_export_keeps_the_op():
    class Upsampler(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.PReLU(3)

        def forward(self, x):
            return ops.pixel_shuffle_prelu(x, self.act.weight, 2)

    module = Upsampler()
    x = torch.randn(1, 12, 4, 3)
    exported = torch.export.export(module, (x,))
    assert "srframe.pixel_shuffle_prelu" in exported.graph_module.code
    assert torch.equal(exported.module()(x), module(x))


@pytest.mark.parametrize("shape, scale, slopes, match", [
    ((2, 12, 3), 2, 1, "4-D"),
    ((1, 10, 3, 3), 2, 1, "10 input channels"),
    ((1, 12, 3, 3), 2, 2, "1 or one per output channel"),
])
def test_bad_shapes_are_refused(shape, scale, slopes, match):
    with pytest.raises(ValueError, match=match):
        ops.pixel_shuffle_prelu(torch.zeros(shape), torch.ones(slopes), scale)


def test_mode_comes_from_the_environment_and_python(monkeypatch):
    monkeypatch.delenv(modes.ENV_VAR, raising=False)
    assert ops.get_mode() == "auto"
    monkeypatch.setenv(modes.ENV_VAR, "Reference")
    assert ops.get_mode() == "reference"
    with ops.use_mode("fused"):
        assert ops.get_mode() == "fused"
        with ops.use_mode("auto"):
            assert ops.get_mode() == "auto"
        assert ops.get_mode() == "fused"
    assert ops.get_mode() == "reference"
    ops.set_mode("auto")
    try:
        assert ops.get_mode() == "auto"
    finally:
        ops.set_mode(None)
    assert ops.get_mode() == "reference"


def test_unknown_modes_are_refused(monkeypatch):
    monkeypatch.setenv(modes.ENV_VAR, "fast")
    with pytest.raises(ops.OpsError, match="SRFRAME_OPS = 'fast'.*auto, fused, reference"):
        ops.get_mode()
    with pytest.raises(srframe.SrframeError, match="set_mode"):
        ops.set_mode("turbo")


def test_auto_takes_the_reference_on_the_cpu():
    x = torch.randn(1, 4, 2, 2)
    with ops.use_mode("auto"):
        assert not modes.use_fused(x)
        assert torch.equal(ops.pixel_shuffle_prelu(x, torch.tensor([0.2]), 2),
                           F.prelu(F.pixel_shuffle(x, 2), torch.tensor([0.2])))


@pytest.mark.skipif(KERNEL_DEVICE is not None, reason="here the kernels can run")
def test_fused_on_the_cpu_without_the_interpreter_says_why():
    with ops.use_mode("fused"), pytest.raises(ops.OpsError, match="SRFRAME_OPS=fused") as error:
        ops.pixel_shuffle_prelu(torch.randn(1, 4, 2, 2), torch.ones(1), 2)
    assert "TRITON_INTERPRET=1" in str(error.value) or "Triton cannot be imported" in str(error.value)


def test_fused_refuses_float64():
    pytest.importorskip("triton")
    with ops.use_mode("fused"), pytest.raises(ops.OpsError, match="float64"):
        ops.pixel_shuffle_prelu(torch.randn(1, 4, 2, 2, dtype=torch.float64), torch.ones(1, dtype=torch.float64), 2)


def test_bias_prelu_reference():
    y, bias, weight = torch.randn(2, 3, 4, 5), torch.randn(3), torch.rand(3)
    with ops.use_mode("reference"):
        assert torch.equal(ops.bias_prelu(y, bias, weight), F.prelu(y + bias.view(1, 3, 1, 1), weight))
    with pytest.raises(ValueError, match="2 biases"):
        epilogue.bias_prelu(y, torch.zeros(2), weight)


# --- inference rewrites ----------------------------------------------------------------------------

def _srresnet_with_batch_statistics() -> nn.Module:
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=4, num_blocks=2, channels=8)
    for module in model.modules():  # BN statistics far from the identity, so folding them matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.3, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model


def test_fold_batchnorm_matches_within_1e_5():
    model = _srresnet_with_batch_statistics()
    folded = ops.fold_batchnorm(model)
    lr = torch.rand(2, 3, 9, 7)
    with torch.no_grad():
        assert (folded(lr) - model.eval()(lr)).abs().max() <= 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 5  # the caller's model is untouched


def test_fold_batchnorm_is_generic():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(),
                          nn.Sequential(nn.ConvTranspose2d(4, 3, 2), nn.BatchNorm2d(3)))
    model[3] = nn.Sequential(nn.Unflatten(-1, (1, -1)), *model[3])  # (N, 4, L) -> (N, 4, 1, L)
    for bn in (model[1], model[3][2]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 2, 8)
    folded = ops.fold_batchnorm(model)
    with torch.no_grad():
        assert torch.allclose(folded(x), model.eval()(x), atol=1e-5)
    assert [type(m).__name__ for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] == []


def test_optimize_for_inference_is_a_faithful_idempotent_copy():
    model = _srresnet_with_batch_statistics().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimized = ops.optimize_for_inference(model)
    lr = torch.rand(1, 3, 8, 10)
    with torch.inference_mode():
        out = optimized(lr)
        assert torch.allclose(out, model.eval()(lr), atol=1e-4)
    assert out.is_contiguous()
    assert not optimized.training and not any(p.requires_grad for p in optimized.parameters())
    assert optimized.scale == 4 and isinstance(optimized, srframe.Generator)
    assert sum(isinstance(m, ops.ConvPReLU) for m in optimized.modules()) == 3  # head and the 2 blocks
    assert optimized.head[0].conv.weight.is_contiguous(memory_format=CHANNELS_LAST)
    assert ops.optimize_for_inference(optimized) is optimized
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_optimize_for_inference_fuses_pixel_shuffle_and_prelu_anywhere():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(3))
    optimized = ops.optimize_for_inference(model)
    assert isinstance(optimized[0], ops.ConvPReLU) is False and isinstance(optimized[1], ops.PixelShufflePReLU)
    x = torch.rand(2, 3, 5, 4)
    with torch.no_grad():
        assert torch.allclose(optimized(x), model(x), atol=1e-6)


@pytest.mark.skipif(not torch._nnpack_available(), reason="this torch has no NNPACK")
def test_nnpack_takes_wide_and_large_kernel_convolutions_only():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 64, 3, padding=1),
                          nn.Conv2d(64, 3, 9, padding=4), nn.Conv2d(3, 8, 9, padding=4))
    optimized = ops.optimize_for_inference(model)
    assert [type(m).__name__ for m in optimized] == ["Conv2d", "NNPACKConv2d", "NNPACKConv2d", "Conv2d"]
    x = torch.rand(1, 16, 20, 18)
    with torch.inference_mode():
        assert torch.allclose(optimized(x), model(x), atol=1e-5)
    assert not any(isinstance(m, ops.NNPACKConv2d) for m in ops.optimize_for_inference(model, nnpack=False).modules())


def test_registered_op_and_eager_path_agree_on_the_reference():
    x = torch.randn(2, 12, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64, requires_grad=True)
    _assert_eager_path_and_registered_op_agree(x, weight)
    assert torch.autograd.gradcheck(lambda a, w: torch.ops.srframe.pixel_shuffle_prelu.default(a, w, 2), (x, weight))


@pytest.mark.skipif(not torch._nnpack_available(), reason="this torch has no NNPACK")
@pytest.mark.parametrize("kernel, cin, cout, height", [(9, 16, 3, 45), (3, 16, 64, 37), (5, 32, 8, 9)])
def test_nnpack_strips_equal_the_whole_convolution(monkeypatch, kernel, cin, cout, height):
    from srframe.ops.inference import NNPACKConv2d

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, kernel, padding=kernel // 2).eval().requires_grad_(False)
    x = torch.rand(2, cin, height, 23)
    monkeypatch.setattr(NNPACKConv2d, "STRIP_ELEMENTS", 2 * cin * 23 * 3)  # strips of a few rows (8 at least)
    with torch.no_grad():
        striped = NNPACKConv2d(conv)(x)
        assert torch.allclose(striped, conv(x), atol=1e-4)
        monkeypatch.setattr(NNPACKConv2d, "STRIP_ELEMENTS", 1 << 40)  # one strip: the whole image
        assert torch.allclose(striped, NNPACKConv2d(conv)(x), atol=1e-5)
