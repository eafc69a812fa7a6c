"""The documentation site, built with `mkdocs build --strict`, against the live registry, recipe spec and CLI."""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import srframe
from srframe import errors
from srframe.cli import build_parser, commands
from srframe.recipe.json_schema import recipe_schema
from srframe.recipe.options import LoaderOptions, LossOptions, ValLoaderOptions
from srframe.recipe.spec import DataSpec, RecipeSpec, StageSpec, TrainSpec

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                           timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    return target


def page(site: Path, name: str) -> str:
    """A built page's article as text, tags stripped, with the ids of its elements kept as ``#id``."""
    text = (site / name / "index.html").read_text(encoding="utf-8")
    article = text[text.index("<article"):text.index("</article>")]
    article = re.sub(r'<[^>]*\bid="([^"]+)"[^>]*>', r" #\1 ", article)
    return html.unescape(re.sub(r"<[^>]+>", " ", article))


def test_every_registered_component_has_its_section_and_keys(site):
    text = page(site, "reference/components")
    for entry in srframe.registry.entries():
        assert f"#{entry.kind}-{entry.name} " in text, f"{entry.kind} {entry.name} is missing from the site"
        section = text.split(f"#{entry.kind}-{entry.name} ", 1)[1].split(" #", 1)[0]
        for key in entry.schema.fields:
            assert f" {key} " in section, f"key {key} of {entry.kind} {entry.name} is missing from the site"


def test_every_recipe_key_is_in_the_reference(site):
    text = page(site, "reference/recipe-keys")
    sections = {"top-level": RecipeSpec, "train": TrainSpec, "data": DataSpec, "stages": StageSpec,
                "data-train": LoaderOptions, "data-val": ValLoaderOptions, "loss-keys": LossOptions}
    for anchor, spec in sections.items():
        assert f"#{anchor} " in text
        section = text.split(f"#{anchor} ", 1)[1].split(" ## ", 1)[0]
        for field in dataclasses.fields(spec):
            assert f" {field.name} " in section, f"{field.name} of {spec.__name__} is missing from #{anchor}"
    from srframe.train import schedules

    for name in schedules.SCHEDULES:
        assert f"#schedule-{name} " in text


def test_every_command_and_option_is_in_the_reference(site):
    text = page(site, "reference/commands")

    root = build_parser()
    global_options = {option for action in root._actions for option in action.option_strings}
    assert all(option in text.split(" #srframe-run ")[0] for option in global_options - {"-h", "--help"})
    found = list(commands(root))
    assert len(found) >= 10
    for path, command in found:
        anchor = "-".join(path)
        assert f"#{anchor} " in text, f"`{' '.join(path)}` is missing from the site"
        section = text.split(f"#{anchor} ", 1)[1]
        if command.description:
            assert " ".join(command.description.split()[:12]) in " ".join(section.split()), "description garbled"
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in set(action.option_strings) - global_options:  # global ones: under `srframe`
                assert option in section, f"{option} of `{' '.join(path)}` is missing from the site"


def test_the_site_serves_the_recipe_schema_of_this_registry(site):
    assert json.loads((site / "recipe.schema.json").read_text()) == recipe_schema(srframe.registry)


def test_every_error_kind_has_a_troubleshooting_section(site):
    text = page(site, "troubleshooting")
    kinds = [cls.__name__ for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.SrframeError) and cls is not errors.SrframeError]
    assert len(kinds) >= 9
    for kind in kinds:
        assert f"#{kind.lower()} " in text, f"{kind} has no section on the troubleshooting page"


def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from (pages(value) if isinstance(value, list) else [value])

    listed = set(pages(config["nav"]))
    written = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts}
    generated = {"reference/components.md", "reference/recipe-keys.md", "reference/commands.md"}
    assert written - listed == set(), "pages missing from mkdocs.yml's nav"
    assert listed - written - generated == set(), "nav entries without a page"
