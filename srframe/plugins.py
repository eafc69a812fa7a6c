"""Plugins: the pluggy hook a plugin implements, and the host that finds and loads plugins.

A plugin is a module (or object) with a ``srframe_register(registry)`` hook implementation::

    import srframe

    @srframe.hookimpl
    def srframe_register(registry):
        registry.add("loss", "charbonnier", Charbonnier)

Installed packages announce plugins with an entry point in group ``srframe``; they are
imported on the first registry lookup, never at ``import srframe``. A recipe's
``plugins = [...]`` loads more modules by dotted name or ``.py`` path. A plugin that fails
to import or to register is reported (``srframe plugins``) and the others keep working.
``SRFRAME_DISABLE_PLUGINS=name,...`` (or ``srframe --disable-plugin NAME``) leaves installed
plugins unloaded, as pytest's ``-p no:NAME`` does.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from .errors import PluginError
from .schema import close_matches
from .registry import Origin, Registry

ENTRY_POINT_GROUP = "srframe"
DISABLE_VARIABLE = "SRFRAME_DISABLE_PLUGINS"
CORE_PLUGIN = "srframe.builtins"  # the entry point srframe's own installation always announces

hookspec = pluggy.HookspecMarker("srframe")
hookimpl = pluggy.HookimplMarker("srframe")

logger = logging.getLogger(__name__)


class Hookspecs:
    """The hooks a srframe plugin may implement."""

    @hookspec
    def srframe_register(self, registry: Registry) -> None:
        """Add the plugin's components with ``registry.add(kind, name, factory)`` or ``registry.register``."""

    @hookspec(firstresult=True)
    def srframe_generator_from_state_dict(self, state_dict: dict[str, Any], source: str) -> Any:
        """Build the generator these weights belong to, with the weights loaded, or return None.

        ``state_dict`` maps parameter names to CPU tensors, read from a checkpoint another project
        wrote (``source`` names the file; wrappers such as ``params_ema`` already removed). The
        first plugin that recognises the architecture answers; the result is a
        ``srframe.Generator`` whose ``srframe_built_from`` names a registered generator and the
        parameters that rebuild it, so ``srframe.save_component`` can save it. Raise
        ``srframe.errors.CheckpointError`` for weights of a recognised architecture that cannot load.
        """


@dataclass
class PluginInfo:
    name: str
    origin: Origin
    status: str = "loaded"  # or "failed", or "disabled"
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)


class PluginHost:
    """Finds plugins (entry points, module names, files) and loads each into ``registry`` in isolation."""

    def __init__(self, registry: Registry, group: str = ENTRY_POINT_GROUP):
        self.registry = registry
        self.group = group
        self.manager = pluggy.PluginManager("srframe")
        self.manager.add_hookspecs(Hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.disabled: set[str] = set()  # plugin names to leave unloaded, besides $SRFRAME_DISABLE_PLUGINS
        registry.on_first_lookup(self.load_entry_points)

    def disable(self, *names: str) -> None:
        """Leave the installed plugins ``names`` unloaded (call before the first lookup)."""
        self.disabled.update(names)

    def disabled_names(self) -> set[str]:
        from_environment = os.environ.get(DISABLE_VARIABLE, "")
        return self.disabled | {name.strip() for name in from_environment.split(",") if name.strip()}

    def load_entry_points(self) -> None:
        """Load every plugin announced in the entry-point group (each once).

        The order is fixed: srframe's own plugins first, then by distribution and plugin name,
        so when two plugins claim a name it is always the later one that fails.
        """
        def order(ep: importlib.metadata.EntryPoint) -> tuple[bool, str, str]:
            dist = ep.dist.name if ep.dist else ""
            return dist != "srframe", dist, ep.name

        entry_points = sorted(importlib.metadata.entry_points(group=self.group), key=order)
        if self.group == ENTRY_POINT_GROUP and not any(ep.value == CORE_PLUGIN for ep in entry_points):
            self.registry.missing_installation = _missing_installation()
            logger.warning("%s", self.registry.missing_installation)
        disabled = self.disabled_names()
        for ep in entry_points:
            if ep.name in self.plugins:
                continue
            package = f"{ep.dist.name} {ep.dist.version}" if ep.dist else None
            if ep.name in disabled:
                self.plugins[ep.name] = PluginInfo(ep.name, Origin(ep.value, package), status="disabled")
                self.registry.disabled_plugins.append(ep.name)
                continue
            self._load(ep.name, ep.load, Origin(ep.value, package))
        installed = sorted({ep.name for ep in entry_points})
        for unknown in sorted(disabled - set(installed)):
            logger.warning("asked to leave plugin %r unloaded, but no installed plugin has that name%s "
                           "Installed plugins: %s.", unknown, close_matches(unknown, installed) or ".",
                           ", ".join(installed) or "(none)")

    def load_module(self, spec: str, base_dir: Path | None = None) -> PluginInfo:
        """Load a plugin module by dotted name, or a ``.py`` file (relative to ``base_dir``).

        Unlike entry points, a module the user asked for must load: failure raises PluginError.
        """
        self.registry.entries()  # installed plugins first, so a clash is blamed on the newcomer
        if spec.endswith(".py"):
            path = Path(os.path.normpath((base_dir or Path.cwd()) / Path(spec).expanduser()))
            name, importer = str(path), lambda: _import_file(path)
        else:
            name, importer = spec, lambda: importlib.import_module(spec)
        info = self.plugins.get(name) or self._load(name, importer, Origin(name), warn=False)
        if info.status != "loaded":
            raise PluginError(f'plugin "{spec}" failed to load: {info.error}')
        return info

    def _load(self, name: str, importer: Callable[[], Any], origin: Origin, warn: bool = True) -> PluginInfo:
        """Import and register one plugin; a failure marks it failed (and is logged when ``warn``)."""
        info = PluginInfo(name, origin)
        self.plugins[name] = info
        before = {(e.kind, e.name) for e in self.registry.entries()}
        plugin = None
        try:
            with self.registry.loading(origin.package):
                plugin = importer()
                _check_hook_marked(plugin)
                if not self.manager.is_registered(plugin):
                    self.manager.register(plugin, name=name)
                    self.manager.check_pending()  # catches misspelt hooks such as srframe_regsiter
                    others = [p for p in self.manager.get_plugins() if p is not plugin]
                    self.manager.subset_hook_caller("srframe_register", remove_plugins=others)(registry=self.registry)
        except Exception as exc:  # a broken plugin must not take the others down
            if plugin is not None and self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            if "unknown hook" in str(exc):
                info.error += " (the hook a srframe plugin implements is srframe_register)"
            self.registry.load_failures[name] = info.error
            if warn:
                logger.warning("srframe plugin %r (%s) failed to load: %s", name, origin, info.error)
            return info
        after = {(e.kind, e.name) for e in self.registry.entries()}
        info.components = sorted(after - before)
        return info


def _check_hook_marked(plugin: Any) -> None:
    """A ``srframe_register`` without ``@srframe.hookimpl`` would be skipped by pluggy, silently."""
    hook = getattr(plugin, "srframe_register", None)
    if callable(hook) and not hasattr(hook, "srframe_impl"):
        raise PluginError("its srframe_register is not marked with @srframe.hookimpl, so it would never be called: "
                          "decorate it with @srframe.hookimpl")


def _missing_installation() -> str:
    """What to say when srframe's own entry points are absent: it is imported without being installed."""
    checkout = Path(__file__).resolve().parents[1]
    command = f"pip install -e {checkout}" if (checkout / "pyproject.toml").is_file() else "pip install srframe"
    return (f"srframe's own components are not registered: srframe is imported from {checkout} without being "
            f"installed, so its entry points (group {ENTRY_POINT_GROUP!r}) are missing. Install it: `{command}` "
            "(or `make setup` in a checkout).")


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"no plugin file at {path}")
    module_name = f"srframe_user_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def generator_from_state_dict(state_dict: dict[str, Any], source: str) -> Any:
    """Ask the loaded plugins which generator ``state_dict`` belongs to (None: no plugin knows it)."""
    registry.entries()  # loads the installed plugins, as any lookup does
    return host.manager.hook.srframe_generator_from_state_dict(state_dict=state_dict, source=source)


registry = Registry()
host = PluginHost(registry)
