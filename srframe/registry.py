"""The registry: kind -> name -> entry (factory, origin, schema).

A :class:`Registry` is an explicit object; nothing is added to it by importing srframe.
Components arrive through ``registry.register`` / ``registry.add`` (research code) and
through plugins (see :mod:`srframe.plugins`), which are loaded on the first lookup.
"""

from __future__ import annotations

import contextlib
import importlib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import RecipeError, RegistryError
from .schema import INVALID, Checker, Schema, close_matches, schema_of, show

KINDS = ("generator", "discriminator", "loss", "degradation", "dataset", "metric")
PLURALS = {"generator": "generators", "discriminator": "discriminators", "loss": "losses",
           "degradation": "degradations", "dataset": "datasets", "metric": "metrics"}

# The interface a built component must satisfy, by kind (in srframe.interfaces).
_INTERFACES = {"generator": "Generator", "discriminator": "Discriminator", "loss": "Loss", "degradation": "Degradation"}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Origin:
    """Where a component came from: its module, and the distribution that shipped it when known."""

    module: str
    package: str | None = None

    def __str__(self) -> str:
        return f"{self.package} ({self.module})" if self.package else self.module


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    origin: Origin

    @property
    def schema(self) -> Schema:
        return schema_of(self.factory)

    @property
    def component_class(self) -> type | None:
        """The class the factory builds: the factory itself, or a function's return annotation (else None).

        Class attributes such as ``needs_discriminator`` are read from it before anything is built.
        """
        if isinstance(self.factory, type):
            return self.factory
        try:
            made = typing.get_type_hints(self.factory).get("return")
        except Exception:  # unresolvable hints: nothing can be told
            return None
        return made if isinstance(made, type) else None

    @property
    def summary(self) -> str:
        """The first line of the factory's docstring."""
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class BuiltFrom:
    """How a component was built: kept on it as ``srframe_built_from`` so it can be saved and rebuilt."""

    kind: str
    name: str
    params: dict[str, Any]


class Registry:
    """Components by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._loaders: list[Callable[[], None]] = []
        self._loaded = False
        self._package: str | None = None  # the distribution being loaded, while a plugin loads
        self.load_failures: dict[str, str] = {}  # plugin name -> why it failed, for lookup errors
        self.missing_installation: str | None = None  # set when srframe's own entry points are absent
        self.disabled_plugins: list[str] = []  # installed plugins left unloaded on purpose

    def on_first_lookup(self, loader: Callable[[], None]) -> None:
        """Run ``loader`` (once) before the first lookup, e.g. to load entry-point plugins."""
        self._loaders.append(loader)

    def add(self, kind: str, name: str, factory: Callable[..., Any], *, module: str | None = None) -> Entry:
        """Register ``factory`` as component ``name`` of ``kind``.

        Its schema is read now: a factory whose settings cannot be checked (``**kwargs`` not marked
        open, unresolvable hints) or that collides with a key recipes reserve is refused here
        (RegistryError), not hours into a run (see :mod:`srframe.recipe.options`).
        """
        from .recipe.options import check_factory

        self._check_kind(kind)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {kind} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise RegistryError(f'{kind} "{name}": the factory must be a class or function, got {factory!r}')
        check_factory(kind, name, factory)
        origin = Origin(module or getattr(factory, "__module__", "?"), self._package)
        existing = self._entries[kind].get(name)
        if existing is not None:
            if existing.factory is factory:
                return existing
            raise RegistryError(f'{kind} "{name}" is registered twice: by {existing.origin} and by {origin}; '
                                "rename one of them")
        entry = Entry(kind, name, factory, origin)
        self._entries[kind][name] = entry
        return entry

    def register(self, kind: str, name: str) -> Callable[[F], F]:
        """Decorator form of :meth:`add`: ``@registry.register("loss", "charbonnier")``."""
        self._check_kind(kind)

        def decorate(factory: F) -> F:
            self.add(kind, name, factory)
            return factory

        return decorate

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; an unknown name is an error listing close matches and all names."""
        self._check_kind(kind)
        self._ensure_loaded()
        entry = self._entries[kind].get(name)
        if entry is None:
            raise RegistryError(self.unknown_name_message(kind, name))
        return entry

    def unknown_name_message(self, kind: str, name: str) -> str:
        known = sorted(self._entries[kind])
        message = (f'unknown {kind} "{name}"{close_matches(name, known) or "."} '
                   f'Registered {PLURALS[kind]}: {", ".join(known) or "(none)"}.')
        if self.missing_installation:
            message += f" {self.missing_installation}"
        if self.disabled_plugins:
            message += (f" Plugins left unloaded (--disable-plugin / $SRFRAME_DISABLE_PLUGINS): "
                        f"{', '.join(self.disabled_plugins)}.")
        if self.load_failures:
            failed = "; ".join(f"{plugin}: {why}" for plugin, why in sorted(self.load_failures.items()))
            message += f" Plugins that failed to load (run `srframe plugins`): {failed}."
        return message

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        self._ensure_loaded()
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        self._ensure_loaded()
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            self._check_kind(k)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def build(self, kind: str, name: str, params: Mapping[str, Any] | None = None, *, source: str = "") -> Any:
        """Check ``params`` against the component's schema and its ``check_params`` rules, then build it.

        ``source`` names where the parameters came from in error messages. Raises RecipeError for
        parameters that do not validate, RegistryError for an unknown name or a failed build.
        """
        entry = self.get(kind, name)
        checker = Checker(source_of=lambda path: source)
        what = f'{kind} "{name}"'
        checked = checker.check_table(dict(params or {}), entry.schema, (), what)
        if checked is not INVALID:
            checker.check_params(entry.factory, checked, (), what)
        if checker.problems:
            raise RecipeError(f"invalid parameters for {what}:", checker.problems)
        return self.instantiate(entry, checked)

    def instantiate(self, entry: Entry, params: Mapping[str, Any]) -> Any:
        """Call the factory with already checked parameters and check the result's interface.

        The result remembers how it was built (``srframe_built_from``) where it can hold an attribute.
        A TypeError or ValueError from the factory becomes a RegistryError naming the component.
        """
        try:
            component = entry.factory(**params)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f'{entry.kind} "{entry.name}" from {entry.origin} could not be built from '
                                f"{_shown(params)}: {type(exc).__name__}: {exc}") from exc
        interface_name = _INTERFACES.get(entry.kind)
        if interface_name:
            interface = getattr(importlib.import_module("srframe.interfaces"), interface_name)
            if not isinstance(component, interface):
                raise RegistryError(f'{entry.kind} "{entry.name}" from {entry.origin} built a '
                                    f"{type(component).__name__}, not a srframe.{interface_name}")
        with contextlib.suppress(AttributeError, TypeError):
            component.srframe_built_from = BuiltFrom(entry.kind, entry.name, dict(params))
        return component

    @contextlib.contextmanager
    def loading(self, package: str | None) -> Iterator[None]:
        """Attribute registrations to ``package``; undo all of them if the block fails."""
        snapshot = {kind: dict(entries) for kind, entries in self._entries.items()}
        previous, self._package = self._package, package
        try:
            yield
        except BaseException:
            self._entries = snapshot
            raise
        finally:
            self._package = previous

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            for loader in self._loaders:
                loader()

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise RegistryError(f'unknown component kind "{kind}"{close_matches(kind, KINDS)} '
                                f"Kinds: {', '.join(KINDS)}.")


def _shown(params: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{key} = {show(value)}" for key, value in params.items()) + "}"
