"""What the server and `dojo predict` run: an export folder through ONNX Runtime by default, or the run's own
model (PyTorch / the booster's library) as the fallback — one `predict(frame) → Prediction` either way — plus
the request decoding each task needs (records, texts, base64 images) and the JSON the answers go out as."""
from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.readers import require_columns, source_name
from ..errors import ConfigError, NotFoundError
from ..tasks.base import Prediction

BACKENDS = ("auto", "onnx", "native")
# Decompression bombs: a few-kB PNG can declare a 40,000² canvas. Sizes are read from the header and refused
# before decoding: per image, and per request (256 images × the per-image limit would still exhaust memory).
MAX_IMAGE_PIXELS = 25_000_000
MAX_REQUEST_PIXELS = 100_000_000
IMAGE_FORMATS = ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"]  # never EPS (Ghostscript) or other plugins


@dataclass
class Predictor:
    model: Any  # ExportedModel or Model: both give predict_frame(frame) → Prediction
    name: str
    task: str
    kind: str
    classes: list[str] | None
    features: list[str]
    backend: str  # "onnx" (ONNX Runtime) or "native" (the run's PyTorch / booster model)
    source: str
    column_types: dict[str, str] = field(default_factory=dict)  # tabular: numeric / categorical / datetime
    device: str = "cpu"  # where a native neural model runs (cuda when the machine has a GPU)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        return self.model.predict_frame(frame)

    def predict_records(self, rows: list[dict[str, Any]]) -> Prediction:
        """The server's batches: an export reads the records itself (tabular cell by cell), the run's own model
        from a DataFrame."""
        from ..export.runtime import ExportedModel

        if isinstance(self.model, ExportedModel):
            return self.model.predict(rows)
        return self.predict(pd.DataFrame.from_records(rows, columns=self.features))

    def example_rows(self, rows: int) -> pd.DataFrame:
        """Rows to warm the model up with (the first calls allocate and pick kernels)."""
        if self.task == "text":
            return pd.DataFrame({column: ["a short text to warm the model up"] * rows for column in self.features})
        if self.task == "image":
            from PIL import Image

            return pd.DataFrame({self.features[0]: [Image.new("RGB", (64, 64), (127, 127, 127))] * rows})
        return pd.DataFrame({column: [None] * rows for column in self.features})

    # -- requests ----------------------------------------------------------------------
    def records(self, items: list[Any]) -> list[dict[str, Any]]:
        """`inputs` of POST /predict → one record per row. Raises ValueError naming the item."""
        budget = {"pixels": 0}  # per call: requests are decoded concurrently on a thread pool
        out = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                if len(self.features) != 1 or self.task == "tabular":
                    raise ValueError(f"inputs[{index}]: give an object with the columns "
                                     f"{', '.join(self.features)}")
                item = {self.features[0]: item}
            if not isinstance(item, dict):
                raise ValueError(f"inputs[{index}]: expected an object or a string, got {type(item).__name__}")
            missing = [column for column in self.features if column not in item]
            if missing:
                raise ValueError(f"inputs[{index}]: missing column(s) {', '.join(map(repr, missing))}")
            record = {column: item[column] for column in self.features}
            for column, value in record.items():
                record[column] = self._cell(value, f"inputs[{index}].{column}", budget)
            out.append(record)
        return out

    def _cell(self, value: Any, where: str, budget: dict[str, int]) -> Any:
        if self.task == "image":
            if not isinstance(value, str):
                raise ValueError(f"{where}: expected a base64-encoded image")
            image = decode_image(value, where)
            budget["pixels"] += image.width * image.height
            if budget["pixels"] > MAX_REQUEST_PIXELS:
                raise ValueError(f"{where}: the request's images hold over {MAX_REQUEST_PIXELS:,} pixels; send "
                                 "fewer or smaller images per request")
            return image
        if self.task == "text":
            if not isinstance(value, str):
                raise ValueError(f"{where}: expected a string")
            return value
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"{where}: expected a number, a string or null, got {type(value).__name__}")
        return value

    def answers(self, prediction: Prediction) -> list[dict[str, Any]]:
        """One JSON object per row: {"value"} for regression, {"label", "probabilities"} for classifiers."""
        if self.kind == "regression":
            return [{"value": float(value)} for value in prediction.values]
        classes = [str(name) for name in prediction.classes]
        return [{"label": plain(label), "probabilities": dict(zip(classes, map(float, row)))}
                for label, row in zip(prediction.values, prediction.probabilities)]


def decode_image(text: str, where: str):
    """base64 (or a data: URL) → RGB PIL image, fully decoded here so a broken file is the caller's 422."""
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{where}: not valid base64 ({error})") from None
    return decode_image_bytes(data, where)


def decode_image_bytes(data: bytes, where: str):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:  # from the header, nothing decoded yet
                raise ValueError(f"{image.width}×{image.height} pixels, over the limit of {MAX_IMAGE_PIXELS:,}")
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError, ValueError) as error:
        raise ValueError(f"{where}: not an image we take ({error})") from None


def decode_images(blobs: list[tuple[bytes, str]]) -> list:
    """Uploaded files (bytes, where) → RGB images, within the per-request pixel budget."""
    images, pixels = [], 0
    for data, where in blobs:
        images.append(decode_image_bytes(data, where))
        pixels += images[-1].width * images[-1].height
        if pixels > MAX_REQUEST_PIXELS:
            raise ValueError(f"{where}: the request's images hold over {MAX_REQUEST_PIXELS:,} pixels")
    return images


def plain(value: Any) -> Any:
    """numpy scalars → Python values for JSON."""
    return value.item() if isinstance(value, np.generic) else value


def open_predictor(reference: str | Path, runs_dir: str | Path = "runs", backend: str = "auto",
                   threads: int = 0, name: str | None = None) -> Predictor:
    """An export folder, or a run (its ONNX export when it has one and backend allows, else its own model)."""
    from ..export.runtime import ExportedModel, is_export
    from ..runs import Run

    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: one of {', '.join(BACKENDS)}")
    path = Path(reference)
    if is_export(path):
        if backend == "native":
            raise ConfigError(f"{path} is an export folder; --backend native needs a run")
        return _from_export(ExportedModel(path, threads=threads), name or path.name, str(path))
    run = Run.open(reference, runs_dir)
    exports = sorted((run.directory / "export").glob("onnx*/manifest.json")) if backend != "native" else []
    # fp32 first (its parity is tightest), then whichever quantized export exists.
    exports.sort(key=lambda manifest: manifest.parent.name != "onnx")
    if exports:
        return _from_export(ExportedModel(exports[0].parent, threads=threads), name or run.name,
                            str(exports[0].parent))
    if backend == "onnx":
        raise NotFoundError(f"run {run.name} has no ONNX export: run `dojo export {run.name}` first, or serve "
                            "with --backend auto to fall back to the run's own model")
    return _from_model(run, name or run.name, threads)


def _from_export(exported, name: str, source: str) -> Predictor:
    manifest = exported.manifest
    types = {column: spec["type"] for column, spec in
             manifest["preprocessing"].get("preprocessor", {}).get("columns", {}).items()}
    return Predictor(exported, name, manifest["task"], manifest["kind"], manifest.get("classes"),
                     list(manifest.get("inputs") or []), "onnx" if manifest["preprocessing"].get(
                         "backend", "onnx") == "onnx" else "native", source, types)


def _from_model(run, name: str, threads: int) -> Predictor:
    from ..model import Model

    if threads:
        import torch

        torch.set_num_threads(threads)
    model = Model.load(run.model_dir)
    task = model._task
    types = {column: spec["type"] for column, spec in getattr(getattr(task, "preprocessor", None), "columns",
                                                              {}).items()}
    return Predictor(model, name, model.meta["task"], model.kind, getattr(task, "classes", None),
                     list(model.features), "native", str(run.directory), types, _to_accelerator(task))


def _to_accelerator(task) -> str:
    """A neural task's model (loaded on the CPU) moves to the GPU when there is one: the fallback backend is
    where a GPU server gets its speed (the tasks predict on whatever device their model is on)."""
    network = getattr(task, "model", None)
    if network is None or not hasattr(network, "parameters"):
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    task.model = network.to("cuda")
    return "cuda"


def read_rows(predictor: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """A batch file's rows, checked for the model's columns before any compute."""
    require_columns(source_name(frame), frame.columns, predictor.features)
    return frame
