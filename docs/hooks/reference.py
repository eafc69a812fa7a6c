"""MkDocs hook: the reference pages, written at build time from the code they describe.

- ``reference/components.md``: every registered component (srframe's, its reference plugins' and
  any plugin installed where the site is built), its docstring and its keys, from the registry.
- ``reference/recipe-keys.md``: every recipe section and key, from the recipe spec's dataclasses,
  and the optimisers and schedules a stage can name.
- ``reference/commands.md``: every command and option, from the CLI's argparse parser.
- ``recipe.schema.json``: what ``srframe recipe schema`` writes, served with the site.

A page of the site cannot drift from the registry: it is the registry, printed. The test
``tests/test_docs_site.py`` builds the site and checks the three against the live code.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import textwrap
import typing
from typing import Annotated, Any

from mkdocs.structure.files import File, Files

import srframe
from srframe.cli import build_parser, commands
from srframe.recipe.json_schema import recipe_schema
from srframe.recipe.options import FILLED, LoaderOptions, LossOptions, ValLoaderOptions
from srframe.recipe.spec import Component, DataSpec, Optimizer, RecipeSpec, Scheduler, StageSpec, TrainSpec
from srframe.registry import KINDS, PLURALS
from srframe.schema import MISSING, Range, describe, field_docs, schema_of, show

GENERATED_NOTE = ("!!! note \"Generated\"\n    This page is written from the code when the site is built{what}; "
                  "it cannot drift from it.\n")


def on_files(files: Files, config: Any) -> Files:
    pages = {
        "reference/components.md": components_page(),
        "reference/recipe-keys.md": recipe_keys_page(),
        "reference/commands.md": commands_page(),
        "recipe.schema.json": json.dumps(recipe_schema(srframe.registry), indent=2) + "\n",
    }
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    """Sphinx roles in docstrings (``:class:`X```) shown as the code they name."""
    return re.sub(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)", "", html)


# ---- components -------------------------------------------------------------------------------

def components_page() -> str:
    registry = srframe.registry
    lines = ["# Components", "", GENERATED_NOTE.format(what=" from the registry, with every plugin installed there"),
             "A recipe chooses a component by its name in `kind`; the other keys of its table are the component's "
             "keys below, checked before anything is built (`srframe recipe check`). From Python, "
             '`srframe.build(kind, name, **keys)` builds one. `srframe plugins` lists what your installation has.',
             ""]
    filled = "; ".join(f"`{key}` ({rule.meaning})" for key, rule in FILLED["*"].items())
    lines += [f"Keys the recipe fills in for every component that takes them: {filled}. A dataset's `mode` is "
              '`"train"` in `[data.train]` and `"val"` in `[data.val]`.', ""]
    for kind in KINDS:
        entries = registry.entries(kind)
        lines += [f"## {PLURALS[kind].capitalize()} {{#{kind}}}", ""]
        if not entries:
            lines += [f"No {kind} is registered by a plugin here."
                      + (" PSNR-Y, SSIM-Y and LPIPS are built into `srframe.eval` ([Evaluation protocol]"
                         "(../evaluation.md))." if kind == "metric" else ""), ""]
            continue
        for entry in entries:
            lines += [f"### `{entry.name}` {{#{kind}-{entry.name}}}", "", f"*{kind}, from {entry.origin}*", ""]
            lines += [_docstring(entry.factory), ""]
            lines += keys_table(entry.schema.fields.values(), {}, filled={*FILLED["*"], *FILLED.get(kind, {})})
            if entry.schema.open:
                lines += ["", "Further keys are passed on to the library it wraps."]
            lines.append("")
    return "\n".join(lines)


def _docstring(factory: Any) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.replace("\n#", "\n\\#")  # a line starting with # is not a heading of this page


# ---- recipe keys ------------------------------------------------------------------------------

def recipe_keys_page() -> str:
    lines = ["# Recipe keys", "", GENERATED_NOTE.format(what=" from the recipe spec (`srframe.recipe.spec`)"),
             "Every key a recipe may hold, by section. Component tables (`kind = ...`) also take the keys of the "
             "component they name: see [Components](components.md). The same rules, as a JSON Schema for editors: "
             "`srframe recipe schema`, or [recipe.schema.json](../recipe.schema.json) as this site was built.", ""]
    top = [_Key("extends", "a path or an array of paths", "none",
                "recipes this one is laid over, relative to this file; tables merge deeply, arrays are replaced whole")]
    sections = [
        ("Top level", "top-level", RecipeSpec, top),
        ("`[train]`", "train", TrainSpec, []),
        ("`[data]`", "data", DataSpec, []),
        ("`[[stages]]`", "stages", StageSpec, []),
    ]
    for title, anchor, spec, extra in sections:
        lines += [f"## {title} {{#{anchor}}}", "", _first_paragraph(spec.__doc__), ""]
        lines += keys_table_of(spec, extra)
        lines.append("")
    for title, anchor, options, where in [
        ("`[data.train]` loader keys", "data-train", LoaderOptions, "`[data.train]`"),
        ("`[data.val]` loader keys", "data-val", ValLoaderOptions, "`[data.val]`"),
        ("Keys of every loss table", "loss-keys", LossOptions, "each table in a stage's `losses`"),
    ]:
        lines += [f"## {title} {{#{anchor}}}", "", f"Besides `kind` and the component's own keys, {where} takes:", ""]
        lines += keys_table_of(options, [])
        lines.append("")
    lines += optimizers_section() + schedules_section()
    return "\n".join(lines)


@dataclasses.dataclass
class _Key:
    name: str
    type: str
    default: str
    meaning: str


def keys_table_of(spec: type, extra: list[_Key]) -> list[str]:
    docs = field_docs(spec)
    keys = list(extra)
    for field in dataclasses.fields(spec):
        if field.default is not dataclasses.MISSING:
            default = "none" if field.default is None else show(srframe.recipe.spec.to_toml_data(field.default))
        elif field.default_factory is not dataclasses.MISSING:
            made = field.default_factory()
            default = (f'`{{ kind = "{made.name}", {", ".join(f"{k} = {show(v)}" for k, v in made.params.items())} }}`'
                       if isinstance(made, srframe.recipe.ComponentSpec) else "the defaults below"
                       if dataclasses.is_dataclass(made) else show(made))
        else:
            default = "required"
        keys.append(_Key(field.name, type_text(typing.get_type_hints(spec, include_extras=True)[field.name]),
                         default, docs.get(field.name, "")))
    return _table(keys)


def keys_table(fields: Any, docs: dict[str, str], filled: set[str]) -> list[str]:
    keys = []
    for field in fields:
        if field.name in filled:
            default = "filled in by the recipe"
        elif field.default is MISSING:
            default = "required"
        elif dataclasses.is_dataclass(field.default):  # a nested table: its keys are in the docstring above
            default = "see above"
        else:
            default = "none" if field.default is None else show(field.default)
        keys.append(_Key(field.name, type_text(field.annotation), default, docs.get(field.name, "")))
    return _table(keys) if keys else ["It takes no keys."]


def _text(text: str) -> str:
    """Plain text as Markdown: ``<output_dir>`` shown, not taken for an HTML tag."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def _table(keys: list[_Key]) -> list[str]:
    cell = _cell
    explained = any(key.meaning for key in keys)  # components document their keys in their docstring
    rows = ["| key | value | default |" + (" meaning |" if explained else ""),
            "|---|---|---|" + ("---|" if explained else "")]
    for key in keys:
        default = key.default if key.default.startswith("`") or key.default in ("required", "none") \
            or key.default.startswith(("filled", "the defaults", "see above")) else f"`{key.default}`"
        rows.append(f"| `{key.name}` | {cell(key.type)} | {cell(default)} |"
                    + (f" {cell(key.meaning)} |" if explained else ""))
    return rows


def type_text(annotation: Any) -> str:
    """What a value looks like, as error messages say it, with its bounds and the component it chooses."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return type_text(options[0])
    if origin is list and args and typing.get_origin(args[0]) is Annotated:
        return f"an array of {type_text(args[0])}".replace("an array of a ", "an array of ")
    if origin is Annotated:
        for marker in args[1:]:
            if isinstance(marker, Component):
                return f"a table: `kind` = a [registered {marker.kind}](components.md#{marker.kind}), and its keys"
            if isinstance(marker, Optimizer):
                return f'a table: `kind` = an [optimizer](#optimizers) (default "{marker.default}"), and its keys'
            if isinstance(marker, Scheduler):
                return "a table: `kind` = a [schedule](#schedules), and its keys"
        text = describe(args[0])
        for marker in args[1:]:
            if isinstance(marker, Range):
                bounds = [f"> {marker.above:g}" if marker.above is not None else "",
                          f">= {marker.min:g}" if marker.min is not None else "",
                          f"<= {marker.max:g}" if marker.max is not None else "",
                          f"< {marker.below:g}" if marker.below is not None else ""]
                text += " " + " and ".join(b for b in bounds if b)
        return text
    if dataclasses.is_dataclass(annotation):
        return f"a table ([{annotation.table_name}](#{_anchor_of(annotation)}))" \
            if hasattr(annotation, "table_name") else "a table"
    return describe(annotation)


def _anchor_of(spec: type) -> str:
    return {TrainSpec: "train", DataSpec: "data", StageSpec: "stages", RecipeSpec: "top-level"}.get(spec, "")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _first_paragraph(doc: str | None) -> str:
    return textwrap.dedent(doc or "").strip().split("\n\n")[0].replace("\n", " ")


def optimizers_section() -> list[str]:
    from srframe.train import optimizers

    lines = ["## Optimizers {#optimizers}", "",
             "`optimizer` and `discriminator_optimizer` name one of torch's or timm's optimisers in `kind` "
             '(default `"adam"`), with timm\'s defaults for that name under the recipe\'s keys '
             "(`timm.optim.create_optimizer_v2`). The keys are the optimiser's constructor parameters, and a key "
             "left out takes the default below: `{ kind = \"adam\" }` trains at lr 0.001. A stage that has no "
             "`optimizer` table at all gets `{ kind = \"adam\", lr = 0.0001 }`. Names whose class needs CUDA and "
             "another package (apex's `fused*`, bitsandbytes' `bnb*`) are refused by `srframe recipe check` where "
             "they cannot run.", ""]
    own = []
    for name in sorted(optimizers._TORCH_OPTIMIZERS):
        info = optimizers.find(name)
        fields = [dataclasses.replace(f, default=info.defaults.get(k, f.default))
                  for k, f in schema_of(info.cls).fields.items() if k != "params"]
        own += [f"### `{name}` {{#optimizer-{name}}}", "",
                f"`torch.optim.{info.cls.__name__}`" + (f", with {', '.join(f'{k} = {show(v)}' for k, v in info.defaults.items())}"
                                                         if info.defaults else ""), ""]
        own += keys_table(fields, {}, filled=set()) + [""]
    others = [n for n in optimizers.names() if n not in optimizers._TORCH_OPTIMIZERS]
    return lines + own + ["### From timm {#optimizers-timm}", "",
                          "These names come from `timm.optim.list_optimizers()`; their keys are their classes' "
                          "parameters, checked by `srframe recipe check`: " + ", ".join(f"`{n}`" for n in others) + ".",
                          ""]


def schedules_section() -> list[str]:
    from srframe.train import schedules

    lines = ["## Schedules {#schedules}", "",
             "`scheduler` shapes the learning rate over a stage (default: constant), stepped once per step. "
             "Every schedule also takes a linear warm-up (`warmup_steps`, `warmup_start`).", ""]
    for name, factory in schedules.SCHEDULES.items():
        lines += [f"### `{name}` {{#schedule-{name}}}", "", _docstring(factory), ""]
        lines += keys_table(schedules.schema(name).fields.values(), {}, filled=set()) + [""]
    return lines


# ---- commands ---------------------------------------------------------------------------------

def commands_page() -> str:
    parser = build_parser()
    lines = ["# Every command and option", "", GENERATED_NOTE.format(what=" from the CLI's parser"),
             "How the commands are used, with examples: [Command line](../cli.md).", "",
             "## `srframe` {#srframe}", "", _text(parser.description or ""), "", "```text", parser.format_usage().strip(),
             "```", ""]
    shared = {tuple(a.option_strings) for a in parser._actions if a.option_strings}
    lines += _options(parser, set()) + [""]
    for path, command in commands(parser):
        title = " ".join(path)
        lines += [f"## `{title}` {{#{_slug(title)}}}", ""]
        lines += [_text(command.description or _help_of(parser, path)), ""]
        lines += ["```text", command.format_usage().strip(), "```", ""]
        lines += _options(command, shared) + [""]
    return "\n".join(lines)


def _help_of(root: argparse.ArgumentParser, path: tuple[str, ...]) -> str:
    parser = root
    for name in path[1:-1]:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next((c.help or "" for c in action._choices_actions if c.dest == path[-1]), "")


def _options(parser: argparse.ArgumentParser, shared: set[tuple[str, ...]]) -> list[str]:
    rows = ["| argument | meaning |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) \
                or tuple(action.option_strings) in shared:
            continue
        name = ", ".join(action.option_strings) if action.option_strings else (action.metavar or action.dest)
        if action.option_strings and action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
        meaning = action.help or ""
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            meaning += f" (one of: {', '.join(map(str, action.choices))})"
        if action.required and action.nargs not in ("*", "?"):
            meaning += " (required)"
        rows.append(f"| `{name}` | {_cell(meaning)} |")
    if len(rows) == 2:
        return ["No options besides the global ones."]
    return rows + ([""] + ["The global options `--debug`, `-v` and `--disable-plugin` are accepted here too."]
                   if shared else [])
