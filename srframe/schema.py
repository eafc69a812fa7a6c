"""Schemas read from factory signatures, and the checking of configuration values against them.

A component's schema is its factory's keyword parameters with their type hints and
defaults. :class:`Checker` checks a table (a recipe section, or the keyword arguments
given to :func:`srframe.build`) against a schema and collects every problem with its
key path, the value, what was expected and close matches, instead of stopping at the first.
"""

from __future__ import annotations

import ast
import collections.abc
import copy
import dataclasses
import difflib
import enum
import functools
import inspect
import io
import json
import os
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, Union

from .errors import Problem, RegistryError

KeyPath = tuple[str | int, ...]
MISSING = inspect.Parameter.empty
F = typing.TypeVar("F", bound=Callable[..., Any])


class _Invalid:
    """Returned by a check that recorded a problem."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


@dataclass(frozen=True)
class Field:
    name: str
    annotation: Any = Any
    default: Any = MISSING

    @property
    def required(self) -> bool:
        return self.default is MISSING


@dataclass(frozen=True)
class Schema:
    fields: dict[str, Field]
    open: bool = False  # the factory takes **kwargs, so unknown keys are passed through


@dataclass(frozen=True)
class Range:
    """A bound on a number: ``Annotated[int, Range(min=1)]``; ``above`` and ``below`` are strict
    bounds (``Annotated[float, Range(above=0)]`` for a positive epsilon)."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max) \
                or (self.above is not None and value <= self.above) or (self.below is not None and value >= self.below):
            bounds = [f"> {self.above}" if self.above is not None else "",
                      f">= {self.min}" if self.min is not None else "", f"<= {self.max}" if self.max is not None else "",
                      f"< {self.below}" if self.below is not None else ""]
            noun = "an integer" if isinstance(value, int) else "a number"
            checker.problem(path, f"{show(value)} is out of range: expected {noun} {' and '.join(b for b in bounds if b)}")
            return INVALID
        return value

    def json_schema(self, schema: dict[str, Any], builder: Any, partial: bool) -> dict[str, Any]:
        """The bounds in JSON Schema (draft 7) words, for ``srframe recipe schema``."""
        bounds = {"minimum": self.min, "maximum": self.max, "exclusiveMinimum": self.above,
                  "exclusiveMaximum": self.below}
        return {**schema, **{k: v for k, v in bounds.items() if v is not None}}


def enforce(factory: Callable[..., Any], params: Mapping[str, Any]) -> None:
    """Raise ValueError listing what ``factory.check_params`` finds in ``params``.

    For constructors called directly from Python, so they refuse what ``srframe recipe check``
    and ``srframe.build`` refuse, from the same rules.
    """
    found = [f"{format_path(_as_path(key))}: {message}" if key != "" else message
             for key, message in factory.check_params(dict(params)) or ()]
    if found:
        raise ValueError("; ".join(found))


def open_schema(factory: F) -> F:
    """Mark a factory whose ``**kwargs`` really takes keys srframe cannot know, e.g. one that forwards
    them to another library's constructor. Without this mark a factory with ``**kwargs`` is refused
    when it registers, because a misspelt recipe key would be passed on unchecked.
    """
    factory.srframe_open_schema = True  # type: ignore[attr-defined]
    return factory


@dataclass(frozen=True)
class Exists:
    """A path that must exist when the recipe is checked: ``Annotated[Path, Exists("dir", hint)]``.

    ``what`` is ``"file"``, ``"dir"`` or ``"any"``; ``hint`` is added to the message (what to put there).
    """

    what: Literal["file", "dir", "any"] = "any"
    hint: str = ""

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        target = Path(value)
        found = {"file": target.is_file, "dir": target.is_dir, "any": target.exists}[self.what]()
        if found:
            return value
        noun = {"file": "file", "dir": "folder", "any": "file or folder"}[self.what]
        state = "does not exist" if not target.exists() else f"is not a {noun}"
        return checker.problem(path, f'"{target}" {state}: expected an existing {noun}'
                                     + (f"; {self.hint}" if self.hint else ""))


def schema_of(factory: Callable[..., Any]) -> Schema:
    """The schema of a factory (class, dataclass or function): its keyword parameters."""
    target = factory.func if isinstance(factory, functools.partial) else factory
    name = getattr(target, "__qualname__", repr(target))
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"cannot read the parameters of {name}: {exc}") from exc
    hinted = target.__init__ if isinstance(target, type) and not dataclasses.is_dataclass(target) else target
    try:
        hints = typing.get_type_hints(hinted, include_extras=True)
    except Exception as exc:  # NameError for unresolvable forward references, among others
        raise RegistryError(f"cannot resolve the type hints of {name}: {exc}") from exc
    fields: dict[str, Field] = {}
    is_open = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            is_open = True
        elif param.kind is param.VAR_POSITIONAL or (param.kind is param.POSITIONAL_ONLY and param.default is not MISSING):
            continue
        elif param.kind is param.POSITIONAL_ONLY:
            raise RegistryError(f"{name} has a required positional-only parameter {param.name!r}; "
                                "a factory must take its settings by keyword")
        else:
            fields[param.name] = Field(param.name, hints.get(param.name, Any), param.default)
    return Schema(fields, is_open)


def format_path(path: KeyPath) -> str:
    """``("stages", 0, "losses", 1, "layer")`` -> ``"stages[0].losses[1].layer"``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show(value: Any) -> str:
    """A value as a recipe author would write it, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, PurePath):
        text = json.dumps(str(value))
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def close_matches(word: str, candidates: collections.abc.Iterable[str]) -> str:
    """A "did you mean" clause, or an empty string."""
    matches = difflib.get_close_matches(str(word), list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(show(m) for m in matches)}?" if matches else ""


def describe(annotation: Any) -> str:
    """What a value of this type looks like in a recipe."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return describe(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(show(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"an array of {len(args)} ({', '.join(describe(a) for a in args)})"
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        return f"an array of {describe(args[0])}" if args else "an array"
    if origin in (dict, collections.abc.Mapping) or annotation is dict or dataclasses.is_dataclass(annotation):
        return "a table"
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "a path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(show(m.value) for m in annotation)
    if annotation is Any or annotation is MISSING:
        return "any value"
    return f"a {getattr(annotation, '__name__', annotation)}"


def _as_path(key: str | int | KeyPath) -> KeyPath:
    if isinstance(key, tuple):
        return key
    return (key,) if key != "" else ()


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


class Checker:
    """Checks values against type hints and records every problem.

    ``Annotated`` metadata extends it: a marker with ``convert(value, path, checker)`` replaces
    the check of the base type; one with ``check(value, path, checker)`` checks the result further.

    ``source_of(path)`` names where the value at ``path`` came from (a recipe file, ``--set``);
    ``base_dir_of(path)`` is the folder a relative path found there is resolved against.
    """

    def __init__(
        self,
        source_of: Callable[[KeyPath], str] = lambda path: "",
        base_dir_of: Callable[[KeyPath], Path] = lambda path: Path.cwd(),
    ):
        self.source_of = source_of
        self.base_dir_of = base_dir_of
        self.problems: list[Problem] = []
        self.partial: dict[KeyPath, list[Any]] = {}  # arrays that failed: their items, INVALID where they did

    def problem(self, path: KeyPath, message: str) -> Any:
        self.problems.append(Problem(self.source_of(path), format_path(path), message))
        return INVALID

    def scratch(self) -> Checker:
        """A checker with the same settings and no problems, for trying alternatives."""
        trial = copy.copy(self)
        trial.problems, trial.partial = [], {}
        return trial

    def check_table(self, table: Any, schema: Schema, path: KeyPath, what: str,
                    provided: Mapping[str, Any] | None = None) -> Any:
        """Check ``table`` against ``schema``; ``provided`` values fill parameters the table leaves out.

        Returns the checked table (values converted, provided values added) or INVALID.
        """
        before = len(self.problems)
        values = self.table_values(table, schema, path, what, provided)
        return values if len(self.problems) == before else INVALID

    def table_values(self, table: Any, schema: Schema, path: KeyPath, what: str,
                     provided: Mapping[str, Any] | None = None) -> Any:
        """Like :meth:`check_table`, but keeps what could be checked: values that failed are INVALID.

        Cross-field checks run on this, so that one ``recipe check`` shows every problem at once.
        Provided values (the recipe's ``scale``) are checked against the parameter's type too.
        """
        if not isinstance(table, Mapping):
            return self.problem(path, f"expected a table for {what}, got {_type_name(table)} {show(table)}")
        out: dict[str, Any] = {}
        for key, value in table.items():
            field = schema.fields.get(key)
            if field is None and not schema.open:
                known = f"Known keys: {', '.join(schema.fields)}." if schema.fields else "It takes no keys."
                self.problem(path + (key,), f"unknown key for {what}{close_matches(key, schema.fields) or '.'} {known}")
                continue
            out[key] = self.check(value, field.annotation if field else Any, path + (key,))
        for name, field in schema.fields.items():
            if name in out:
                continue
            if provided and name in provided:
                out[name] = self._check_provided(provided[name], field, path + (name,))
            elif field.required:
                self.problem(path + (name,), f"missing required key for {what}: expected {describe(field.annotation)}")
                out[name] = INVALID
        return out

    def _check_provided(self, value: Any, field: Field, path: KeyPath) -> Any:
        """A value the recipe fills in (its ``scale``): a problem with it is blamed on where it was written."""
        trial = self.scratch()
        checked = trial.check(value, field.annotation, path)
        for problem in trial.problems:
            self.problems.append(dataclasses.replace(
                problem, source=self.source_of((field.name,)),
                message=f"{problem.message} (the value comes from the recipe's {field.name} = {show(value)})"))
        return checked

    def check(self, value: Any, annotation: Any, path: KeyPath) -> Any:
        """Check one value; returns it converted (ints to floats, strings to resolved paths) or INVALID."""
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if annotation is Any or annotation is MISSING:
            return value
        if origin is Annotated:
            converters = [m for m in args[1:] if hasattr(m, "convert")]
            checked = converters[0].convert(value, path, self) if converters else self.check(value, args[0], path)
            for marker in args[1:]:
                if checked is not INVALID and hasattr(marker, "check"):
                    checked = marker.check(checked, path, self)
            return checked
        if origin in (Union, types.UnionType):
            return self._check_union(value, annotation, args, path)
        if origin is Literal:
            if any(value == choice and type(value) is type(choice) for choice in args):
                return value
            return self._mismatch(value, annotation, path, close_matches(value, [str(a) for a in args]))
        if annotation in (bool, int, float, str):
            return self._check_scalar(value, annotation, path)
        if isinstance(annotation, type) and issubclass(annotation, PurePath):
            if isinstance(value, (str, os.PathLike)):
                return self.resolve_path(value, path)
            return self._mismatch(value, annotation, path)
        if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
            return self._check_array(value, annotation, origin or annotation, args, path)
        if origin in (dict, collections.abc.Mapping) or annotation is dict:
            if not isinstance(value, Mapping):
                return self._mismatch(value, annotation, path)
            item_type = args[1] if args else Any
            checked = {k: self.check(v, item_type, path + (k,)) for k, v in value.items()}
            return INVALID if INVALID in checked.values() else checked
        if dataclasses.is_dataclass(annotation):
            return self._check_dataclass(value, annotation, path)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            for member in annotation:
                if value == member.value or value is member:
                    return member
            return self._mismatch(value, annotation, path, close_matches(value, [str(m.value) for m in annotation]))
        if isinstance(annotation, type):
            return value if isinstance(value, annotation) else self._mismatch(value, annotation, path)
        return value  # a typing construct we do not check

    def _check_dataclass(self, value: Any, annotation: type, path: KeyPath) -> Any:
        """A table checked against a dataclass's fields, then its ``check_fields`` (cross-field) rules.

        ``check_fields(values, table)`` gets the checked values (INVALID where a key failed; an array
        with a failed item is given with INVALID at that item) and the table as written, and returns ``(key, message)`` pairs; ``table_name`` names the table in
        messages ("a stage"), default "this table".
        """
        before = len(self.problems)
        what = getattr(annotation, "table_name", "this table")
        values = self.table_values(value, schema_of(annotation), path, what)
        if values is INVALID:
            return INVALID
        cross_field = getattr(annotation, "check_fields", None)
        if cross_field is not None:
            known = {k: self.partial.get(path + (k,), v) if v is INVALID else v for k, v in values.items()}
            for key, message in cross_field(known, value) or ():
                self.problem(path + _as_path(key), message)
        if len(self.problems) > before:
            return INVALID
        try:
            return annotation(**values)
        except (TypeError, ValueError) as exc:
            return self.problem(path, str(exc))

    def check_params(self, factory: Callable[..., Any], params: Mapping[str, Any], path: KeyPath, what: str) -> bool:
        """Run the factory's own ``check_params(params)`` rules (if it has any) on checked parameters.

        The rules see every parameter: those given, and the defaults of the rest. ``check_params``
        yields ``(key, message)`` pairs, ``key`` relative to the component's table (a name, a tuple
        of names and indices, or "" for the table itself); each becomes a problem. Returns whether
        all rules passed. Rules that fail themselves raise RegistryError naming ``what``
        (the component): that is a bug of the plugin, not of the recipe.
        """
        rules = getattr(factory, "check_params", None)
        if rules is None:
            return True
        defaults = {f.name: f.default for f in schema_of(factory).fields.values() if not f.required}
        before = len(self.problems)
        try:
            found = list(rules({**defaults, **params}) or ())
            for item in found:
                key, message = item
                self.problem(path + _as_path(key), str(message))
        except Exception as exc:
            raise RegistryError(f"{what}: its check_params failed with {type(exc).__name__}: {exc}. It must be a "
                                "staticmethod or classmethod taking the parameters (a dict, defaults included) and "
                                "yielding (key, message) pairs; fix the plugin") from exc
        return len(self.problems) == before

    def resolve_path(self, value: str | os.PathLike, path: KeyPath) -> Path:
        resolved = Path(value).expanduser()
        if not resolved.is_absolute():
            resolved = self.base_dir_of(path) / resolved
        return Path(os.path.normpath(resolved))

    def _mismatch(self, value: Any, annotation: Any, path: KeyPath, hint: str = "") -> Any:
        return self.problem(path, f"{show(value)} is {_type_name(value)}: expected {describe(annotation)}{hint}")

    def _check_scalar(self, value: Any, annotation: type, path: KeyPath) -> Any:
        if isinstance(value, bool) != (annotation is bool):
            return self._mismatch(value, annotation, path)
        if annotation is float and isinstance(value, int):
            return float(value)
        return value if isinstance(value, annotation) else self._mismatch(value, annotation, path)

    def _check_union(self, value: Any, annotation: Any, args: tuple, path: KeyPath) -> Any:
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        if len(options) == 1:
            return self.check(value, options[0], path)
        for option in options:
            trial = self.scratch()
            checked = trial.check(value, option, path)
            if not trial.problems:
                return checked
        return self._mismatch(value, annotation, path)

    def _check_array(self, value: Any, annotation: Any, container: Any, args: tuple, path: KeyPath) -> Any:
        if not isinstance(value, (list, tuple)):
            return self._mismatch(value, annotation, path)
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return self.problem(path, f"{show(value)} has {len(value)} items: expected {describe(annotation)}")
            checked = [self.check(v, a, path + (i,)) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            checked = [self.check(v, item_type, path + (i,)) for i, v in enumerate(value)]
        if any(c is INVALID for c in checked):
            self.partial[path] = checked  # what could be checked, for the rules across fields
            return INVALID
        return tuple(checked) if container is tuple else checked


def field_docs(cls: type) -> dict[str, str]:
    """What each field of dataclass ``cls`` means: its ``metadata["doc"]``, else the comment on its line.

    ``steps: int = 100  # steps between logs`` documents ``steps`` as "steps between logs". Used by
    ``srframe recipe schema`` and the generated recipe reference, so the comment in the source is the doc.
    """
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(cls) if "doc" in f.metadata}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return docs
    comments = {t.start[0]: t.string.lstrip("#").strip()
                for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id not in docs \
                and node.end_lineno in comments:
            docs[node.target.id] = comments[node.end_lineno]
    return docs
