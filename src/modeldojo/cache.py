"""The local cache of converted models (~/.cache/modeldojo, or $MODELDOJO_CACHE): folders built once from a
packaged file, keyed by its SHA-256, and written so that an interrupted build leaves nothing that looks done."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

CACHE_ENVIRONMENT = "MODELDOJO_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENVIRONMENT) or Path.home() / ".cache" / "modeldojo")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_once(folder: Path, marker: str, marker_text: str, write) -> Path:
    """`folder`, made by `write(partial)` into a temporary sibling renamed into place with `marker` written
    last — unless a complete one (holding the marker) exists. A killed build leaves nothing that looks done."""
    if (folder / marker).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        write(partial)
        (partial / marker).write_text(marker_text, encoding="utf-8")
        if folder.exists() and not (folder / marker).is_file():
            shutil.rmtree(folder)  # an incomplete folder (an older layout): replace it
        try:
            partial.rename(folder)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (folder / marker).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def packaged_file(package: str, name: str) -> Path | None:
    """File `name` inside an installed package's folder, located without importing the package (some packaged
    models' `__init__` imports libraries we never install), or None when either is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / name
    return path if path.is_file() else None
