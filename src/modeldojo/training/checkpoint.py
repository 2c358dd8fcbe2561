"""Checkpoints that survive a crash at any moment and restore training bit for bit.

checkpoints/step-00000120/
  model.safetensors   all weights (safetensors: no code runs on load)
  optimizer.pt        optimizer + scheduler (+ grad scaler) states, loaded with weights_only=True
  rng.json            python and numpy RNG states;  rng.pt: torch CPU/CUDA RNG states
  state.json          step, epoch, position in the epoch, early-stopping state, history

Each is written into a hidden temp folder, fsynced, then renamed: a folder named step-* is whole.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

PATTERN = re.compile(r"^step-(\d{8})$")


def _fsync_tree(directory: Path) -> None:
    for file in directory.iterdir():
        with open(file, "rb") as stream:
            os.fsync(stream.fileno())
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def rng_states() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    version, state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    python_numpy = {"python": [version, list(state), gauss],
                    "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)]}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    return python_numpy, tensors


def restore_rng(python_numpy: dict[str, Any], tensors: dict[str, Any]) -> None:
    version, state, gauss = python_numpy["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, position, has_gauss, cached = python_numpy["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])


def save(directory: Path, *, model: torch.nn.Module, optimizer, scheduler, scaler, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{state['step']:08d}"
    temp = Path(tempfile.mkdtemp(dir=directory, prefix=".tmp-"))
    try:
        save_model(model, str(temp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None}, temp / "optimizer.pt")
        python_numpy, tensors = rng_states()
        (temp / "rng.json").write_text(json.dumps(python_numpy))
        torch.save(tensors, temp / "rng.pt")
        (temp / "state.json").write_text(json.dumps(state, indent=1))
        _fsync_tree(temp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return final


def complete(directory: Path) -> list[Path]:
    """Whole checkpoints, oldest first (temp folders from an interrupted write are ignored)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if PATTERN.match(p.name) and (p / "state.json").is_file())


def latest(directory: Path) -> Path | None:
    found = complete(directory)
    return found[-1] if found else None


def load(path: Path, *, model: torch.nn.Module, optimizer=None, scheduler=None, scaler=None,
         restore_random: bool = True) -> dict[str, Any]:
    load_model(model, str(path / "model.safetensors"))
    if optimizer is not None:
        states = torch.load(path / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(states["optimizer"])
        scheduler.load_state_dict(states["scheduler"])
        if scaler is not None and states["scaler"] is not None:
            scaler.load_state_dict(states["scaler"])
    if restore_random:
        restore_rng(json.loads((path / "rng.json").read_text()), torch.load(path / "rng.pt", weights_only=True))
    return json.loads((path / "state.json").read_text())


def prune(directory: Path, keep: int, protect: set[int]) -> None:
    """Keep the `keep` newest checkpoints plus protected steps (the best); remove temp leftovers."""
    found = complete(directory)
    for path in found[:-keep]:
        if int(PATTERN.match(path.name).group(1)) not in protect:
            shutil.rmtree(path, ignore_errors=True)
    for leftover in directory.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
