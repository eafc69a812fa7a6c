"""Export for deployment: a generator as an ONNX file or a ``torch.export`` program (``.pt2``).

::

    from srframe.export import export_onnx, export_program
    G = srframe.load_generator("runs/srresnet_x4")
    report = export_onnx(G, "srresnet_x4.onnx")            # checked with onnxruntime at two sizes
    report = export_program(G, "srresnet_x4.pt2")          # checked with torch.export.load

Both files take ``lr`` (N, C, H, W) float in [0, 1] with dynamic N, H and W, and give ``sr``
(N, C_out, H * scale, W * scale), not clamped (clamp to [0, 1] as ``srframe upscale`` does). A file is
written only once its check passes. One module per job: :mod:`.trace` (torch.export, srframe's custom
ops decomposed), :mod:`.onnx_file`, :mod:`.program`, :mod:`.check` (the exported file against the
torch model). onnx, onnxscript and onnxruntime are imported only when an ONNX file is written or
checked (``pip install 'srframe[export]'``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ArgumentError
from .check import check_onnx, check_program
from .common import CHECK_SIZES, INPUT, OUTPUT, TOLERANCES, ExportError, ExportReport, SizeCheck
from .onnx_file import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_opset, export_onnx
from .program import export_program

FORMATS = {".onnx": "onnx", ".pt2": "pt2"}
_KINDS = {"onnx": "an ONNX file", "pt2": "a torch.export program"}

__all__ = ["CHECK_SIZES", "DEFAULT_OPSET", "FORMATS", "INPUT", "MAX_OPSET", "MIN_OPSET", "OUTPUT", "TOLERANCES",
           "ExportError", "ExportReport", "SizeCheck", "check_onnx", "check_opset", "check_program", "export_onnx",
           "export_program", "format_of"]


def format_of(path: str | Path, asked: str | None = None) -> str:
    """``"onnx"`` or ``"pt2"``: ``asked`` if given, else from ``path``'s suffix (``.onnx``, ``.pt2``).

    Raises ArgumentError for an unknown format or suffix, or a suffix naming the other format than ``asked``.
    """
    suffix = Path(path).suffix.lower()
    known = ", ".join(f"{s} ({f})" for s, f in FORMATS.items())
    if asked is not None:
        if asked not in FORMATS.values():
            raise ArgumentError(f"--format {asked!r} is not an export format: give onnx or pt2")
        if suffix in FORMATS and FORMATS[suffix] != asked:
            raise ArgumentError(f"-o {path} names {_KINDS[FORMATS[suffix]]} by its suffix, but --format is {asked}: "
                                "change the suffix or --format")
        return asked
    if suffix not in FORMATS:
        raise ArgumentError(f"-o {path}: cannot tell the export format from the suffix {suffix or '(none)'!r}; "
                            f"name the file {known}, or give --format onnx|pt2")
    return FORMATS[suffix]
