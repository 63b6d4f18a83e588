"""The peers' virtual environments, under ``$REGARD_CACHE/bench/venvs`` (default ``~/.cache/regard``).

Each peer gets its own venv with the same CPU build of ``torch==2.13.0`` that
Regard uses, installed first and kept by a pip constraint so that no peer
requirement can replace it. Nothing of the peers is copied into the repository.

* Joey NMT 2.3.0 installs with its own requirements, plus ``importlib_metadata``
  (imported by ``joeynmt.helpers`` but not declared).
* OpenNMT-py 3.5.1 pins ``torch<2.3``, so it is installed with ``--no-deps`` and its
  requirements (read from the wheel's METADATA) are pinned here by hand. Every one
  of them installs on Python 3.11 (``fasttext-wheel`` has a cp311 wheel), so no stub
  is needed; ``spacy`` and ``fasttext`` are imported at start-up by its transforms.

A stamp file holding the recipe makes a second run skip the installation; a
changed recipe reinstalls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class PeerSpec:
    """How to install one peer: ``packages`` with dependencies, ``no_deps`` without."""

    name: str
    packages: tuple[str, ...]
    no_deps: tuple[str, ...] = ()
    note: str = ""


PEERS: dict[str, PeerSpec] = {
    "joeynmt": PeerSpec(
        "joeynmt", ("joeynmt==2.3.0", "importlib_metadata==10.2.0"),
        note="joeynmt 2.3.0 with its requirements; importlib_metadata added (imported, not declared)"),
    "opennmt-py": PeerSpec(
        "opennmt-py",
        ("configargparse==1.9.0", "PyYAML==6.0.3", "sacrebleu==2.6.0", "rapidfuzz==3.14.6",
         "pyahocorasick==2.3.1", "fasttext-wheel==0.9.2", "spacy==3.8.18", "six==1.17.0",
         "tensorboard==2.21.0", "pyonmttok==1.38.1", "ctranslate2==4.8.5", "flask==3.1.3",
         "waitress==3.0.2"),
        no_deps=("OpenNMT-py==3.5.1",),
        note="OpenNMT-py 3.5.1 --no-deps (it pins torch<2.3); its METADATA requirements pinned by hand"),
}


def default_cache() -> Path:
    """``$REGARD_CACHE/bench`` or ``~/.cache/regard/bench``."""
    return Path(os.environ.get("REGARD_CACHE") or "~/.cache/regard").expanduser() / "bench"


def venv_python(cache: Path, name: str) -> Path:
    return cache / "venvs" / name / "bin" / "python"


def _recipe(spec: PeerSpec) -> dict:
    return {"torch": TORCH, "packages": list(spec.packages), "no_deps": list(spec.no_deps)}


def _pip(python: Path, *args: str, log) -> None:
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    log(f"  $ {' '.join(cmd[2:])}")
    subprocess.run(cmd, check=True)


def ensure_peer(spec: PeerSpec, cache: Path, log=print) -> Path:
    """Create and fill the venv of ``spec`` unless its stamp matches; return its python."""
    venv = cache / "venvs" / spec.name
    stamp = venv / ".bench-installed.json"
    python = venv_python(cache, spec.name)
    if stamp.is_file() and json.loads(stamp.read_text()) == _recipe(spec) and python.exists():
        return python
    log(f"installing {spec.name} into {venv} ({spec.note})")
    if not python.exists():
        # from inside Regard's venv too, venv builds on the base interpreter (sys._base_executable)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(TORCH + "\n")
    _pip(python, TORCH, log=log)
    _pip(python, "-c", str(constraints), *spec.packages, log=log)
    if spec.no_deps:
        _pip(python, "--no-deps", *spec.no_deps, log=log)
    frozen = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    (venv / "versions.txt").write_text(frozen.stdout)
    stamp.write_text(json.dumps(_recipe(spec)))
    return python


def installed_versions(cache: Path, name: str, packages: tuple[str, ...] = ("torch", "joeynmt", "OpenNMT-py",
                                                                            "numpy")) -> dict[str, str]:
    """Versions of a few key packages in a peer's venv, from its ``pip freeze`` record."""
    record = cache / "venvs" / name / "versions.txt"
    if not record.is_file():
        return {}
    wanted = {p.lower() for p in packages}
    found = {}
    for line in record.read_text().splitlines():
        if "==" in line:
            pkg, version = line.split("==", 1)
            if pkg.lower() in wanted:
                found[pkg] = version
    return found
