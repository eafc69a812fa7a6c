"""Recipes: TOML files that compose components declaratively.

``load_recipe`` reads a recipe and the recipes it ``extends``, applies overrides, loads the
plugins it names and checks every section against its schema before anything is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PluginError, Problem, RecipeError
from ..plugins import PluginHost
from ..schema import format_path
from .layers import Layered, Source, load_layers, parse_assignment, parse_key_path
from .options import LossOptions
from .spec import ComponentSpec, RecipeChecker, RecipeSpec, StageSpec, to_toml_data

__all__ = ["ComponentSpec", "LossOptions", "Recipe", "RecipeSpec", "StageSpec", "load_recipe", "load_document"]


@dataclass(frozen=True)
class Recipe:
    """A checked recipe: the typed ``spec``, the file it came from and the merged document."""

    spec: RecipeSpec
    path: Path
    document: Layered

    def to_toml(self) -> str:
        """The resolved recipe: bases merged, overrides applied, defaults filled, paths absolute."""
        import tomli_w

        return tomli_w.dumps(to_toml_data(self.spec))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_toml(), encoding="utf-8")
        return path


Overrides = Mapping[str, Any] | Sequence[str] | None


def load_document(path: str | Path, overrides: Overrides = None) -> Layered:
    """The merged recipe document with overrides applied, not yet checked.

    ``overrides`` is a mapping of key paths to values (``{"stages[0].steps": 10}``) or a list of
    ``KEY=VALUE`` strings as given to ``--set`` (values read as TOML).
    """
    document = load_layers(Path(path))
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            document.assign(parse_key_path(key), value, Source("overrides", Path.cwd()))
    elif overrides:
        for text in overrides:
            key_path, value = parse_assignment(text)
            document.assign(key_path, value, Source(f"--set {text}", Path.cwd()))
    return document


def load_recipe(path: str | Path, overrides: Overrides = None, *, host: PluginHost | None = None) -> Recipe:
    """Read, merge, override and check a recipe; raises RecipeError listing every problem.

    ``host`` holds the registry to check against (default: srframe's own).
    """
    if host is None:
        from ..plugins import host
    document = load_document(path, overrides)
    _load_plugins(document, host)
    context = {"scale": document.data["scale"]} if isinstance(document.data.get("scale"), int) else {}
    checker = RecipeChecker(host.registry, context,
                            source_of=lambda p: document.source_of(p).label,
                            base_dir_of=lambda p: document.source_of(p).base_dir)
    spec = checker.check(document.data, RecipeSpec, ())
    if checker.problems:
        count = len(checker.problems)
        raise RecipeError(f"recipe {document.root.label} has {count} problem{'s' * (count > 1)}:", checker.problems)
    spec = dataclasses.replace(spec, name=spec.name or Path(path).stem,
                               output_dir=Path.cwd() / spec.output_dir)  # absolute already unless defaulted
    return Recipe(spec, Path(path), document)


def _load_plugins(document: Layered, host: PluginHost) -> None:
    """Load the recipe's ``plugins``; ``.py`` paths become absolute so the resolved recipe travels."""
    plugins = document.data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        source = document.source_of(("plugins",)).label
        raise RecipeError(f"{source}: plugins: expected an array of module names or .py paths, got {plugins!r}")
    problems = []
    for index, module in enumerate(plugins):
        source = document.source_of(("plugins", index))
        try:
            info = host.load_module(module, base_dir=source.base_dir)
        except PluginError as exc:
            problems.append(Problem(source.label, format_path(("plugins", index)), str(exc)))
            continue
        if module.endswith(".py"):
            plugins[index] = info.origin.module
    if problems:
        raise RecipeError(f"cannot load {'a plugin' if len(problems) == 1 else 'plugins'} the recipe names:", problems)
