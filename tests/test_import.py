"""``import srframe`` stays cheap: no torch, no plugin, no heavy library until used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "torchvision", "kornia", "timm", "srframe_plugins", "rich", "numpy", "PIL"]


def imported_after(code: str) -> list[str]:
    probe = f"{code}; import sys, json; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def test_import_srframe_loads_nothing_heavy():
    loaded = imported_after("import srframe")
    assert [name for name in HEAVY if name in loaded] == []


def test_interfaces_and_plugins_load_on_use():
    loaded = imported_after("import srframe; srframe.Generator; srframe.registry.names('loss')")
    assert "torch" in loaded and "srframe_plugins" in loaded
