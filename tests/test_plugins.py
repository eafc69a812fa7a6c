"""Plugins: discovery through entry points, isolation of broken plugins, modules named by recipes."""

from __future__ import annotations

import pytest

from srframe.errors import PluginError, RegistryError
from srframe.plugins import PluginHost

GOOD = """
    import srframe
    from srframe.interfaces import Loss

    class Half(Loss):
        '''Half the mean absolute error.'''
        def forward(self, ctx):
            return 0.5 * (ctx.sr - ctx.hr).abs().mean()

    @srframe.hookimpl
    def srframe_register(registry):
        registry.add("loss", "half_l1", Half)
"""


def test_entry_point_plugin_is_found_with_its_distribution(host: PluginHost, installed):
    installed("acme-sr", {"acme_good": GOOD}, {"acme": "acme_good"})
    entry = host.registry.get("loss", "half_l1")
    assert str(entry.origin) == "acme-sr 1.0 (acme_good)"
    info = host.plugins["acme"]
    assert info.status == "loaded" and info.components == [("loss", "half_l1")]
    # the reference plugins come through the same mechanism
    assert host.plugins["srresnet"].status == "loaded"


def test_plugins_are_not_loaded_before_the_first_lookup(host: PluginHost, installed):
    installed("acme-sr", {"acme_lazy": GOOD}, {"acme": "acme_lazy"})
    assert host.plugins == {}
    host.registry.names("loss")
    assert "acme" in host.plugins


def test_broken_plugins_are_reported_and_the_rest_keep_working(host: PluginHost, installed):
    installed("broken-sr", {
        "broken_import": "import a_module_that_is_not_there\n",
        "broken_hook": """
            import srframe
            from srframe.interfaces import Loss

            class Partial(Loss):
                pass

            @srframe.hookimpl
            def srframe_register(registry):
                registry.add("loss", "partial", Partial)
                raise RuntimeError("weights table missing")
        """,
        "misspelt_hook": """
            import srframe

            @srframe.hookimpl
            def srframe_regsiter(registry):
                pass
        """,
        "acme_ok": GOOD,
    }, {"imports": "broken_import", "hook": "broken_hook", "typo": "misspelt_hook", "ok": "acme_ok"})
    registry = host.registry
    assert "half_l1" in registry.names("loss")  # the good one still loaded
    assert "srresnet" in registry.names("generator")
    plugins = host.plugins
    assert plugins["imports"].status == "failed"
    assert "ModuleNotFoundError" in plugins["imports"].error and "a_module_that_is_not_there" in plugins["imports"].error
    assert plugins["hook"].status == "failed" and "weights table missing" in plugins["hook"].error
    assert "partial" not in registry.names("loss")  # a failed plugin leaves nothing half-registered
    assert plugins["typo"].status == "failed" and "srframe_regsiter" in plugins["typo"].error
    with pytest.raises(RegistryError) as excinfo:
        registry.get("loss", "partial")
    assert "Plugins that failed to load" in str(excinfo.value) and "weights table missing" in str(excinfo.value)


def test_a_plugin_taking_a_registered_name_fails_alone(host: PluginHost, installed):
    installed("clash-sr", {"clash": """
        import srframe
        from srframe.interfaces import Loss

        class Mine(Loss):
            pass

        @srframe.hookimpl
        def srframe_register(registry):
            registry.add("loss", "mse", Mine)
    """}, {"clash": "clash"})
    registry = host.registry
    entry = registry.get("loss", "mse")
    assert entry.origin.package.startswith("srframe ")
    assert host.plugins["clash"].status == "failed"
    assert 'loss "mse" is registered twice' in host.plugins["clash"].error
    assert "clash-sr 1.0 (clash)" in host.plugins["clash"].error


def test_load_module_by_name_and_by_file(host: PluginHost, installed, write, tmp_path):
    installed("nothing", {"lab_losses": GOOD.replace("half_l1", "lab_l1")}, {})
    info = host.load_module("lab_losses")
    assert info.components == [("loss", "lab_l1")]
    write("scripts/my_losses.py", GOOD.replace("half_l1", "file_l1"))
    info = host.load_module("scripts/my_losses.py", base_dir=tmp_path)
    assert info.components == [("loss", "file_l1")]
    assert info.origin.module == str(tmp_path / "scripts" / "my_losses.py")
    assert host.load_module("lab_losses") is host.plugins["lab_losses"]  # loaded once


def test_load_module_that_fails_raises(host: PluginHost, tmp_path):
    with pytest.raises(PluginError, match="no_such_lab_module"):
        host.load_module("no_such_lab_module")
    with pytest.raises(PluginError, match="no plugin file at"):
        host.load_module("missing.py", base_dir=tmp_path)
