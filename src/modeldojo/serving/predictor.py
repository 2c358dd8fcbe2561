"""What the server and `dojo predict` run: an export folder through ONNX Runtime by default, or the run's own
model (PyTorch / the booster's library) as the fallback — one `predict(frame) → Prediction` either way. How
requests are decoded and answers encoded is the task's codec (tasks/codec.py): nothing here names a task."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import tasks
from ..data.readers import require_columns, source_name
from ..errors import ConfigError, NotFoundError
from ..tasks.base import Prediction
from ..tasks.codec import Codec, Signature

BACKENDS = ("auto", "onnx", "native")


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
    codec: Codec | None = None  # the task's wire format, built from the fields above

    def __post_init__(self) -> None:
        if self.codec is None:
            signature = Signature(self.name, self.task, self.kind, self.classes, self.features, self.column_types)
            self.codec = tasks.get(self.task).codec(signature)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        return self.model.predict_frame(frame)

    def predict_records(self, rows: list[dict[str, Any]]) -> Prediction:
        """The server's batches: an export reads the records itself (tabular cell by cell), the run's own model
        from a DataFrame."""
        from ..export.runtime import ExportedModel

        if isinstance(self.model, ExportedModel):
            return self.model.predict(rows)
        frame = pd.DataFrame.from_records(rows)  # the features, and a target where the task reads history
        return self.predict(frame.reindex(columns=list(dict.fromkeys([*self.features, *frame.columns]))))

    def example_records(self, rows: int) -> list[dict[str, Any]]:
        """Rows to warm the model up with (the first calls allocate and pick kernels)."""
        return self.codec.example_records(rows)

    def records(self, items: list[Any]) -> list[dict[str, Any]]:
        """`inputs` of POST /predict → one record per row. Raises ValueError naming the item."""
        return self.codec.records(items)

    def answers(self, prediction: Prediction) -> list[dict[str, Any]]:
        return self.codec.answers(prediction)


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
    """A batch file's rows in the task's own form (a chat model reads any chat layout), checked for the model's
    columns before any compute."""
    normalize = getattr(predictor.model, "_normalize", None)  # a run's model; an export reads its columns as is
    if normalize is not None:
        frame = normalize(frame)
    require_columns(source_name(frame), frame.columns, predictor.features)
    return frame
