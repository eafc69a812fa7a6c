"""The ``srframe`` command line: run | eval | upscale | report | plugins | recipe | weights.

Library errors (SrframeError) become one readable message and exit code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .errors import DataError, SrframeError, TrainingInterrupted

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.disable_plugins += getattr(args, "disabled_after", [])
    _configure_logging(args.verbose)
    if args.disable_plugins:
        from .plugins import host

        host.disable(*args.disable_plugins)
    previous = signal.getsignal(signal.SIGTERM)
    handles = args.handler is not _run and threading.current_thread() is threading.main_thread()
    if handles:  # training stops at a checkpoint on its own; the rest stop like Ctrl-C
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return args.handler(args)
    except TrainingInterrupted as exc:
        _stderr().print(f"srframe: {exc}", highlight=False, markup=False)
        return EXIT_INTERRUPTED
    except SrframeError as exc:
        if args.debug:
            raise
        from rich.text import Text

        _stderr().print(Text.assemble(("srframe: error: ", "bold red"), str(exc)))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _stderr().print("srframe: interrupted")
        return EXIT_INTERRUPTED
    finally:
        if handles:
            signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, naming where to read more."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; the docs site's command reference is written from it."""
    parser = _Parser(prog="srframe", description="Train, evaluate and deploy super-resolution models.")
    _global_options(parser, after_command=False)
    common = _Parser(add_help=False)  # the same options accepted after the command, as people type them
    _global_options(common, after_command=True)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="train, validate and checkpoint as a recipe says",
                              description="Train a recipe into a run directory (default <output_dir>/<name>). "
                                          "Under torchrun every process runs this; rank 0 writes the run directory.")
    _recipe_arguments(run)
    run.add_argument("--run-dir", type=Path, metavar="DIR", help="the run directory, exactly (default: "
                                                                  "<output_dir>/<recipe name>)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run directory from its latest checkpoint (refused if the recipe changed "
                          "in a way that would break the run)")
    run.set_defaults(handler=_run)

    evaluate = commands.add_parser("eval", parents=[common], help="PSNR/SSIM/LPIPS of models and the bicubic baseline on benchmark sets")
    evaluate.add_argument("models", nargs="*", metavar="MODEL",
                          help="component files, run directories or community checkpoints (.pth, .safetensors); "
                               "the bicubic baseline is always included (naming it, as `bicubic`, is allowed)")
    evaluate.add_argument("--data", nargs="+", required=True, metavar="DIR",
                          help="benchmark folders: HR images, or canonical NAME_HR / NAME_LRx4 pairs")
    evaluate.add_argument("--scale", type=int, help="upscaling factor (default: the first model's)")
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="write {set: {model: {psnr_y, ssim_y, lpips, n, grey}}}")
    evaluate.add_argument("-o", "--out", type=Path, metavar="DIR", help="write index.html, report.md, results.json and crops here")
    evaluate.add_argument("--save-images", action="store_true", help="also save every SR image (needs --out)")
    evaluate.add_argument("--no-lpips", action="store_true", help="skip LPIPS (it needs VGG16 and LPIPS weights)")
    evaluate.add_argument("--grey", choices=("intensity", "basicsr"), default="intensity",
                          help="how grey images (Set14's bridge) are scored: on their own intensity, as the published "
                               "bicubic rows are (default), or as BasicSR-style code does, three equal channels "
                               "and Y in 16-235 (1.32 dB higher on a grey image; most papers since 2018)")
    _tile_arguments(evaluate)
    evaluate.set_defaults(handler=_eval)

    upscale = commands.add_parser("upscale", parents=[common], help="super-resolve image files or folders with a trained model")
    upscale.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="image files or folders of images")
    upscale.add_argument("-o", "--out", type=Path, required=True, metavar="OUT", help="output folder")
    upscale.add_argument("--model", required=True, metavar="CKPT",
                         help="component file, run directory or community checkpoint (.pth, .safetensors)")
    upscale.add_argument("--batch", type=int, default=1,
                         help="tiles per forward pass (default 1; more is faster on a GPU and needs more memory)")
    upscale.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    upscale.add_argument("--overwrite", action="store_true",
                         help="replace outputs that already exist (default: keep them and say so); an input is "
                              "never replaced")
    upscale.add_argument("--no-channels-last", action="store_true",
                         help="keep NCHW memory layout (default: channels_last on the CPU, NCHW on CUDA)")
    _tile_arguments(upscale)
    upscale.set_defaults(handler=_upscale)

    report = commands.add_parser("report", parents=[common], help="evaluate a run's stages and write its HTML report",
                                 description="Bicubic and each stage's generator on the run's validation images (or "
                                             "--data folders): RUN_DIR/report/index.html, report.md, table.json.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory made by `srframe run`")
    report.add_argument("--data", nargs="+", default=[], metavar="DIR",
                        help="benchmark folders to evaluate on instead of the recipe's [data.val]")
    report.add_argument("-o", "--out", type=Path, metavar="DIR", help="where to write it (default RUN_DIR/report)")
    report.add_argument("--no-lpips", action="store_true", help="skip LPIPS (it needs VGG16 and LPIPS weights)")
    report.add_argument("--device", metavar="DEVICE", help="where the generators run (default: cuda when available)")
    report.set_defaults(handler=_report)

    export = commands.add_parser(
        "export", parents=[common], help="write a generator as ONNX or a torch.export program, checked against torch",
        description="Export a generator for deployment: ONNX (run by onnxruntime, TensorRT, ...) or a torch.export "
                    "program (.pt2), with dynamic batch, height and width; input lr (N, C, H, W) in [0, 1], output "
                    "sr. The file is run at two input sizes against the torch model before it is written "
                    "(ONNX with onnxruntime's CPU provider, .pt2 with torch.export.load).")
    export.add_argument("model", metavar="MODEL",
                        help="component file, run directory or community checkpoint (.pth, .safetensors), as "
                             "`upscale --model` takes")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the file to write: FILE.onnx (ONNX) or FILE.pt2 (torch.export program); its folder is "
                             "created; an existing file is kept unless --overwrite")
    export.add_argument("--overwrite", action="store_true", help="replace FILE if it exists (never the model itself)")
    export.add_argument("--format", choices=["onnx", "pt2"],
                        help="the format, when FILE's suffix is neither .onnx nor .pt2")
    export.add_argument("--opset", type=int, metavar="N",
                        help="ONNX opset, 16 to 23 (default 20, torch.onnx's; onnxruntime >= 1.17 runs it; 16 and 17 "
                             "go through onnx's version converter)")
    export.add_argument("--fp16", action="store_true",
                        help="export in float16: weights, input and output (checked against the fp32 model, "
                             "tolerance 2e-2)")
    export.add_argument("--no-check", action="store_true",
                        help="write the file without running it against the torch model (no onnxruntime needed)")
    export.add_argument("--check-size", nargs=2, type=int, action="append", metavar=("H", "W"),
                        help="an LR input size to check at (repeatable; default 29 43 and 48 32)")
    export.add_argument("--atol", type=float, metavar="X",
                        help="the largest max abs difference from the torch model accepted (default 1e-4; "
                             "2e-2 with --fp16)")
    export.set_defaults(handler=_export)

    plugins = commands.add_parser("plugins", parents=[common], help="list plugins, their status and their components")
    plugins.add_argument("--json", action="store_true", help="print machine-readable JSON")
    plugins.set_defaults(handler=_plugins)

    recipe = commands.add_parser("recipe", parents=[common], help="show or check a recipe, or write the recipe schema")
    recipe_commands = recipe.add_subparsers(title="recipe commands", required=True, metavar="COMMAND")
    show = recipe_commands.add_parser("show", parents=[common], help="print the resolved recipe (bases merged, overrides applied)")
    _recipe_arguments(show)
    show.add_argument("--raw", action="store_true", help="print the merged recipe without checking it")
    show.set_defaults(handler=_recipe_show)
    check = recipe_commands.add_parser("check", parents=[common], help="check a recipe against the registered components")
    _recipe_arguments(check)
    check.set_defaults(handler=_recipe_check)
    schema = recipe_commands.add_parser("schema", parents=[common],
                                        help="write a JSON schema of recipes (every registered component) for editors")
    schema.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write it to FILE (default, or -: print it); an existing FILE must be such a schema")
    schema.set_defaults(handler=_recipe_schema)

    weights = commands.add_parser("weights", parents=[common], help="find or fetch pretrained weights (VGG for the content loss)")
    weights_commands = weights.add_subparsers(title="weights commands", required=True, metavar="COMMAND")
    listing = weights_commands.add_parser("list", parents=[common], help="where each backbone's weights are looked for, and what is there")
    listing.set_defaults(handler=_weights_list)
    fetch = weights_commands.add_parser("fetch", parents=[common], help="put pretrained weights into the cache (ImageNet VGG, LPIPS heads)")
    fetch.add_argument("backbone", choices=["vgg16", "vgg19", "lpips"])
    fetch.set_defaults(handler=_weights_fetch)
    return parser


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("srframe",)):
    """Every command and subcommand under ``parser``: ``(("srframe", "recipe", "check"), its parser)``, in order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield path + (name,), command
                yield from commands(command, path + (name,))


def _global_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """--debug, -v and --disable-plugin; after the command they add to (never reset) what came before it."""
    unset = {"default": argparse.SUPPRESS} if after_command else {}
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors", **unset)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details", **unset)
    parser.add_argument("--disable-plugin", dest="disabled_after" if after_command else "disable_plugins",
                        action="append", default=argparse.SUPPRESS if after_command else [], metavar="NAME",
                        help="leave an installed plugin unloaded (repeatable; also $SRFRAME_DISABLE_PLUGINS=a,b)")


def _tile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile", type=int, default=256, help="tile size in LR pixels (default 256)")
    parser.add_argument("--overlap", type=int, default=32, help="context around each tile in LR pixels (default 32)")
    parser.add_argument("--device", metavar="DEVICE", help="where the model runs: cpu, cuda, cuda:1, ... "
                                                           "(default: cuda when available, else cpu)")


def _device(asked: str | None) -> str:
    """The --device given, or CUDA when this machine has it."""
    if asked is not None:
        return asked
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a recipe TOML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set stages[0].steps=10 (value read as TOML)")


def _run(args: argparse.Namespace) -> int:
    from .recipe import load_recipe
    from .train.engine import run

    recipe = load_recipe(args.recipe, args.overrides)
    path = run(recipe, run_dir=args.run_dir, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        _stdout().print(f"run directory: {path}", highlight=False, markup=False)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .component_files import load_generator
    from .eval.benchmark import BICUBIC, model_name_of
    from .eval.report import markdown_table
    from .eval.suite import run_suite

    if args.save_images and args.out is None:
        raise SrframeError("--save-images needs --out DIR to know where to save the images")
    paths = [path for path in args.models if path != BICUBIC]
    names = [model_name_of(path) for path in paths]
    shared = sorted({name for name in names if names.count(name) > 1 or name == BICUBIC})
    if shared:  # each model is a row of the table and a folder of the report
        clashes = "; ".join(f"{name}: {', '.join(p for p, n in zip(paths, names) if n == name)}" for name in shared)
        raise SrframeError(f"models must have distinct names (their file or run directory name), and not "
                           f"{BICUBIC!r}: {clashes}; copy or rename one")
    models = {name: load_generator(path) for name, path in zip(names, paths)}
    scales = {name: int(model.scale) for name, model in models.items()}
    if args.scale is None and len(set(scales.values())) > 1:
        found = ", ".join(f"{name} x{scale}" for name, scale in scales.items())
        raise SrframeError(f"the models upscale by different factors ({found}): a table compares one scale; "
                           "evaluate the models of each scale in their own `srframe eval`")
    scale = args.scale if args.scale is not None else (next(iter(scales.values())) if models else None)
    if scale is None:
        raise SrframeError("give --scale, or a model to take it from")
    with _progress() as progress:
        task = progress.add_task("evaluating", total=None)
        suite = run_suite(models, args.data, scale, out_dir=args.out, json_file=args.json,
                          save_images=args.save_images, lpips=not args.no_lpips, tile=args.tile, grey=args.grey,
                          overlap=args.overlap, device=_device(args.device),
                          on_image=lambda set_name, model: progress.update(task, advance=1,
                                                                           description=f"{set_name}: {model}"))
    console = _stdout()
    console.print(markdown_table(suite.results), highlight=False, markup=False)
    for label, path in (("report", suite.report), ("table", suite.json_file)):
        if path is not None:
            console.print(f"{label}: {path}", highlight=False, markup=False)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .eval.report import markdown_table
    from .train.report import report_run

    with _progress() as progress:
        task = progress.add_task("evaluating", total=None)
        suite = report_run(args.run_dir, args.data, args.out, lpips=not args.no_lpips, device=_device(args.device),
                           on_image=lambda set_name, model: progress.update(task, advance=1,
                                                                            description=f"{set_name}: {model}"))
    console = _stdout()
    console.print(markdown_table(suite.results), highlight=False, markup=False)
    console.print(f"report: {suite.report}", highlight=False, markup=False)
    return 0


def _upscale(args: argparse.Namespace) -> int:
    from .infer.files import upscale_files

    with _progress() as progress:
        result = upscale_files(args.model, args.inputs, args.out, tile=args.tile, overlap=args.overlap,
                               batch_size=args.batch, precision=args.precision, overwrite=args.overwrite,
                               device=_device(args.device),
                               channels_last=False if args.no_channels_last else None, progress=progress)
    lines = [f"{len(result.written)} image(s) written to {args.out}"
             + (f", {len(result.replaced)} of them replacing existing files (--overwrite)" if result.replaced else "")]
    if result.kept:
        lines.append(f"{len(result.kept)} existing output(s) kept as they were, e.g. {result.kept[0]}; "
                     "--overwrite replaces them")
    if result.foreign:
        lines.append(f"{len(result.foreign)} file(s) already at output paths were not written by srframe upscale and "
                     f"are kept (never replaced), e.g. {result.foreign[0]}; move them or write elsewhere with -o")
    if result.left_out:
        lines.append(f"{len(result.left_out)} image(s) inside the output folder left out of the inputs, e.g. "
                     f"{result.left_out[0]}")
    _stdout().print("\n".join(lines), highlight=False, markup=False)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .component_files import load_generator
    from .export import CHECK_SIZES, DEFAULT_OPSET, INPUT, OUTPUT, check_opset, export_onnx, export_program, format_of
    from .export.common import describe, require
    from .outputs import check_output_file

    kind = format_of(args.output, args.format)
    if kind == "pt2" and args.opset is not None:
        raise SrframeError("--opset is for ONNX files; a .pt2 torch.export program has none: leave it out")
    opset = check_opset(args.opset if args.opset is not None else DEFAULT_OPSET)
    check_output_file(args.output, "the exported file (-o)")
    model = Path(args.model)
    if model.exists() and args.output.resolve() == model.resolve():
        raise SrframeError(f"-o {args.output} is the model being exported: name another file")
    if args.output.exists() and not args.overwrite:
        raise SrframeError(f"{args.output} exists: pass --overwrite to replace it, or name another file")
    if kind == "onnx":  # before loading the model: a missing package is a one-line error, at once
        require("onnx", "onnxscript", purpose="writing ONNX files")
        if not args.no_check:
            require("onnxruntime", purpose="checking the ONNX file (skip it with --no-check)")
    generator = load_generator(args.model)
    options = dict(precision="fp16" if args.fp16 else "fp32", check=not args.no_check,
                   sizes=[tuple(size) for size in args.check_size] if args.check_size else CHECK_SIZES,
                   tolerance=args.atol, name=f"{describe(generator)} from {args.model}")
    with _progress() as progress:
        progress.add_task(f"exporting {args.model}", total=None)
        report = (export_onnx(generator, args.output, opset=opset, **options) if kind == "onnx"
                  else export_program(generator, args.output, **options))
    shape = lambda dims: f"({', '.join(map(str, dims))})"  # noqa: E731
    what = f"ONNX opset {report.opset}" if report.format == "onnx" else "torch.export program"
    lines = [f"{report.path}: {what}, {report.precision}, {report.size_mb:.3g} MB, exported in {report.seconds:.1f} s",
             f"  input {INPUT} {shape(report.input_shape)} -> output {OUTPUT} {shape(report.output_shape)}; "
             f"dynamic axes: {', '.join(report.dynamic_axes) or 'none'}"]
    if report.checks:
        lines.append(f"  checked with {report.checked_with} against torch (fp32): max abs diff "
                     f"{', '.join(map(str, report.checks))} (tolerance {report.tolerance:.0e})")
    else:
        lines.append("  not checked (--no-check)")
    _stdout().print("\n".join(lines), highlight=False, markup=False)
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from .plugins import host, registry

    entries = registry.entries()
    if args.json:
        print(json.dumps({
            "plugins": [{"name": p.name, "origin": str(p.origin), "status": p.status, "error": p.error,
                         "components": [{"kind": k, "name": n} for k, n in p.components]}
                        for p in host.plugins.values()],
            "components": [{"kind": e.kind, "name": e.name, "origin": str(e.origin), "summary": e.summary}
                           for e in entries],
        }, indent=2))
        return 0
    from rich.markup import escape
    from rich.table import Table

    plugins = Table(title="Plugins", title_justify="left")
    for column in ("plugin", "status", "origin", "components"):
        plugins.add_column(column)
    for info in host.plugins.values():
        status = {"loaded": "[green]loaded[/]", "disabled": "[yellow]disabled[/]"}.get(info.status, "[red]failed[/]")
        detail = {"loaded": ", ".join(f"{kind} {name}" for kind, name in info.components),
                  "disabled": "left unloaded (--disable-plugin / $SRFRAME_DISABLE_PLUGINS)"}.get(info.status, info.error)
        plugins.add_row(escape(info.name), status, escape(str(info.origin)), escape(detail or "(none)"))
    components = Table(title="Components", title_justify="left")
    for column in ("kind", "name", "origin", "summary"):
        components.add_column(column)
    for entry in entries:
        components.add_row(entry.kind, escape(entry.name), escape(str(entry.origin)), escape(entry.summary))
    console = _stdout()
    console.print(plugins)
    console.print(components)
    return 0


def _recipe_show(args: argparse.Namespace) -> int:
    if args.raw:
        import tomli_w

        from .recipe import load_document

        print(tomli_w.dumps(load_document(args.recipe, args.overrides).data), end="")
        return 0
    from .recipe import load_recipe

    print(load_recipe(args.recipe, args.overrides).to_toml(), end="")
    return 0


def _recipe_check(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    spec = load_recipe(args.recipe, args.overrides).spec
    lines = [f"ok: {args.recipe} (recipe {spec.name!r}, x{spec.scale}, generator {spec.generator.name})"]
    for stage in spec.stages:
        losses = ", ".join(f"{loss.name} x {loss.options.weight:g}" for loss in stage.losses)
        adversary = f", discriminator {stage.discriminator.name}" if stage.discriminator else ""
        lines.append(f"  stage {stage.name!r}: {stage.steps} steps, {stage.optimizer.name}, losses {losses}{adversary}")
    _stdout().print("\n".join(lines), highlight=False, markup=False)
    return 0


def _recipe_schema(args: argparse.Namespace) -> int:
    from .outputs import check_output_file, write_text
    from .plugins import registry
    from .recipe.json_schema import is_recipe_schema, recipe_schema

    text = json.dumps(recipe_schema(registry), indent=2) + "\n"
    if args.output is None or str(args.output) == "-":
        sys.stdout.write(text)
        return 0
    check_output_file(args.output, "the schema file (-o)")
    if args.output.exists() and not is_recipe_schema(args.output):
        raise DataError(f"{args.output} exists and is not a recipe schema srframe wrote: nothing written. "
                        "To fix: give a new file name, or remove that file first")
    write_text(args.output, text)
    _stdout().print(f"recipe schema written to {args.output}", highlight=False, markup=False)
    return 0


def _weights_list(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from .errors import WeightsError
    from .weights import TORCHVISION_URLS, known_locations, verify_cached

    def present(path: Path) -> str:
        if not path.is_file():
            return "no"
        try:
            verify_cached(path)
        except WeightsError:
            return "[red]refused[/] (fails verification)"
        return "[green]verified[/]"

    table = Table(title="Pretrained weights (looked for in this order)", title_justify="left")
    for column in ("backbone", "place", "path", "present"):
        table.add_column(column, overflow="fold")
    for backbone in TORCHVISION_URLS:
        for place, path in known_locations(backbone):
            table.add_row(backbone, place, escape(str(path)), present(path))
    _stdout().print(table)
    return 0


def _weights_fetch(args: argparse.Namespace) -> int:
    from .weights import find_lpips_heads, find_vgg_weights, sha256

    path = find_lpips_heads() if args.backbone == "lpips" else find_vgg_weights(args.backbone)
    _stdout().print(f"{args.backbone}: {path} (sha256 {sha256(path)})", highlight=False, markup=False)
    return 0


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=_stderr(), show_path=False)])


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _stderr()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)  # no bar in logs


def _stdout():
    from rich.console import Console

    return Console(soft_wrap=True)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
