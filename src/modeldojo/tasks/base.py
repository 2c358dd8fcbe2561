"""The Task interface every task folder implements (tabular now; text, image, LLM later).

A task turns rows into a fitted model and back into predictions. Everything around it —
reading, checks, splits, metrics, reports, run folders, tracking — is shared and lives in
api.py, data/, evaluation/ and runs.py, so a new task only writes what is specific to it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..config import Config
from ..events import EventBus
from ..registry import Registry
from .codec import Codec

TASKS: Registry[type["Task"]] = Registry("task")


def neural_search_space(lowest_learning_rate: float, highest_learning_rate: float) -> dict[str, Any]:
    """The default `dojo tune` space of the fine-tuning tasks: learning rate (log), batch size, weight decay."""
    return {"train.learning_rate": {"loguniform": [lowest_learning_rate, highest_learning_rate]},
            "train.batch_size": {"choice": [16, 32]}, "train.weight_decay": {"choice": [0.0, 0.01, 0.1]}}


@dataclass
class Prediction:
    """Predicted values (regression) or labels (classification) plus class probabilities."""

    values: np.ndarray
    probabilities: np.ndarray | None = None  # shape (rows, classes), columns in `classes` order
    classes: list[str] | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. unseen categories counted per column
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # more output columns per row (quantiles)
    # The whole output table when the answers are not one per input row (a forecast of the steps after the
    # history given): `dojo predict` writes it instead of the input rows beside their predictions.
    table: pd.DataFrame | None = None
    context: dict[str, Any] = field(default_factory=dict)  # per-row values the task's scores read, never written

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"prediction": self.values})
        if self.probabilities is not None:
            for index, name in enumerate(self.classes):
                frame[f"probability_{name}"] = self.probabilities[:, index]
        for name, values in self.columns.items():
            frame[name] = values
        return frame


class Task(ABC):
    """Fit / predict / save / load for one kind of data. Instances hold a fitted model."""

    name: ClassVar[str]
    supported_kinds: ClassVar[tuple[str, ...]] = ("regression", "binary", "multiclass")
    row_label_checks: ClassVar[bool] = True  # whether the table-model label-error check makes sense
    # A neural task trains with torch (tuning shares torch's threads between its workers).
    neural: ClassVar[bool] = False
    # Prediction rows may carry the target: rows that have it are history the model conditions on (forecasting),
    # so predict() receives the target column beside the features when it is present.
    reads_history: ClassVar[bool] = False
    # Why k-fold cross-validation does not apply to this task (`--cv K` refuses with it); None = it does.
    no_cross_validation: ClassVar[str | None] = None
    # Why `dojo tune` does not apply to this task; None = it does.
    no_tuning: ClassVar[str | None] = None
    # How a served model of this task reads requests and writes answers (serving/ calls only this).
    codec: ClassVar[type[Codec]] = Codec
    # finetune.strategy "auto" becomes this (the neural tasks' fine-tuning default).
    default_strategy: ClassVar[str] = "full"
    # The target column when data.target is left empty (a task whose rows carry their own answer).
    default_target: ClassVar[str | None] = None
    # Settings this task starts from where the config leaves the project-wide default in place (e.g. a detector's
    # new head needs a far higher learning rate than fine-tuning a text encoder): {"group.key": value}.
    setting_defaults: ClassVar[dict[str, Any]] = {}
    # `dojo export --format` choices; the first is the default. "onnx" goes through export_onnx and the shared
    # parity check; any other format through export_format().
    export_formats: ClassVar[tuple[str, ...]] = ("onnx",)
    # False: the task's ONNX export has its own parity check (detection compares boxes, not probabilities), so
    # "onnx" goes through export_format() as the task's other formats do.
    onnx_shared_parity: ClassVar[bool] = True

    def __init__(self, config: Config, kind: str, target: str) -> None:
        self.config, self.kind, self.target = config, kind, target
        self.classes: list[str] | None = None
        self.workdir: Path | None = None  # the run folder (checkpoints go here); None in cross-validation
        self.excluded_columns: list[str] = []  # left out by the data checks (constant, ID-like) or by the user

    # -- choosing a task ---------------------------------------------------------------
    @classmethod
    @abstractmethod
    def detect(cls, frame: pd.DataFrame, target: str | None) -> float:
        """How well this task fits the data, 0..1 (the highest wins when task.name is auto)."""

    @classmethod
    @abstractmethod
    def example(cls, kind: str, seed: int = 0) -> tuple[pd.DataFrame, str, dict[str, Any]]:
        """A small synthetic dataset, its target column and config overrides (e.g. a tiny model)
        that make it train in seconds: used by the task contract test."""

    @classmethod
    def claims(cls, config: Config) -> bool:
        """True when the config asks for this task by a setting only it reads (forecast.time_column): task auto
        then takes it whatever the data looks like."""
        return False

    @classmethod
    def example_inputs(cls, frame: pd.DataFrame, target: str) -> pd.DataFrame:
        """Rows a model trained on `example()` data predicts in the contract test (chat: the answer lies inside
        the rows, so the target column may be absent)."""
        return frame.drop(columns=[target], errors="ignore").head(25)

    @classmethod
    def read_source(cls, path: Path) -> pd.DataFrame | None:
        """The rows of a data layout only this task reads (a detection dataset: a YOLO folder, a COCO json), or
        None: the shared readers (data/readers.py) then read the path. Must be cheap when it says None."""
        return None

    # -- the task's data policy: api.py calls these; the defaults are the table's "features → label" -----
    @classmethod
    def normalize(cls, frame: pd.DataFrame, config: Config) -> pd.DataFrame:
        """The file's rows in the form fit/predict read (after reading, before checks; also for new data to
        predict). The default keeps the table as it is."""
        return frame

    @classmethod
    def rewrites_rows(cls) -> bool:
        """True when `normalize` turns rows into the task's own form (chat: JSON conversations); such a task owns
        its cells, so the shared cell normalisation (data/normalize.py) leaves them alone."""
        return cls.normalize.__func__ is not Task.normalize.__func__

    @classmethod
    def check_data(cls, frame: pd.DataFrame, config: Config, label_errors: bool):
        """The data-quality report (data/checks.py's CheckReport; its `kind` is the prediction kind)."""
        from ..data import checks

        data = config.data
        return checks.run_checks(frame, data.target, kind=config.task.kind, seed=config.train.seed,
                                 label_errors=label_errors and data.label_error_check,
                                 sample_rows=data.check_sample_rows, drop_columns=data.drop_columns,
                                 separator=data.label_separator, skip_bad_images=data.skip_bad_images)

    @classmethod
    def features(cls, frame: pd.DataFrame, excluded: set[str]) -> list[str]:
        """The columns the model reads, given those the checks and the config leave out (and the target)."""
        return [column for column in frame.columns if column not in excluded]

    @classmethod
    def target_values(cls, frame: pd.DataFrame, target: str, kind: str, separator: str) -> pd.Series:
        from ..data.target import target_values

        return target_values(frame, target, kind, separator)

    @classmethod
    def split_rows(cls, frame: pd.DataFrame, y: pd.Series, config: Config):
        """(train, validation, test) row positions when the task owns its split (forecasting: the last horizon of
        each series is the test, never a random sample); None = the shared random / stratified split."""
        return None

    @classmethod
    def split_labels(cls, frame: pd.DataFrame, y: pd.Series, kind: str) -> tuple[pd.Series, str]:
        """(values, kind) the train/validation/test split stratifies on (splits.py): by default the target."""
        return y, kind

    @classmethod
    def scores(cls, kind: str, actual, prediction: Prediction, separator: str) -> dict[str, Any]:
        """Test metrics of a prediction against the actual targets."""
        from ..evaluation import metrics

        return metrics.compute(kind, actual, prediction.values, prediction.probabilities, prediction.classes,
                               separator)

    @classmethod
    def primary_metric(cls, kind: str) -> str:
        """The test metric tuning optimises and `dojo runs` shows (tuning.metric auto)."""
        from ..evaluation import metrics

        return metrics.PRIMARY[kind]

    @classmethod
    def worst(cls, frame: pd.DataFrame, kind: str, y: pd.Series, prediction: Prediction, count: int,
              separator: str) -> pd.DataFrame:
        """The error analysis: the `count` worst predicted rows."""
        from ..evaluation import metrics

        return metrics.worst_predictions(frame, kind, y, prediction.values, prediction.probabilities,
                                         prediction.classes, count, separator)

    def extra_evaluation(self, frame: pd.DataFrame, y: pd.Series, prediction: Prediction,
                         events: EventBus) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """After the test predictions: more test metrics, and report sections as (title, HTML) pairs."""
        return {}, []

    def export_format(self, folder: Path, format: str, quantize: str | None, frame: pd.DataFrame,
                      y: pd.Series):
        """Write a non-ONNX export into `folder`; return (manifest details, a parity report with .passed,
        .explain() and .to_dict()), the parity measured on `frame` (held-out rows)."""
        from ..errors import ConfigError

        raise ConfigError(f"the {self.name} task exports only {', '.join(self.export_formats)}")

    @classmethod
    def search_space(cls, config: Config, kind: str) -> dict[str, Any]:
        """The default hyperparameter space for `dojo tune` (tuning/space.py format); {} = none."""
        return {}

    # Neural tasks' weights can be quantized; a task whose exported model has none (trees) says False.
    quantizable: ClassVar[bool] = True

    def export_onnx(self, folder: Path) -> dict[str, Any]:
        """Write model.onnx and the preprocessing files into `folder`; return the manifest's preprocessing."""
        from ..errors import ConfigError

        raise ConfigError(f"ONNX export of the {self.name} task is not built yet")

    # Optional method(folder) → preprocessing: an exact alternative export, used when the ONNX one fails
    # parity (tabular: the learner's native file when a converter rounded its thresholds).
    export_fallback = None

    @classmethod
    def onnx_feeds(cls, folder: Path, preprocessing: dict[str, Any]):
        """Load the exported preprocessing once; return feeds(frame) → iterator of (row positions,
        ONNX Runtime input dict) batches."""
        raise NotImplementedError

    @classmethod
    def exported_scorer(cls, folder: Path, manifest: dict[str, Any], threads: int = 0):
        """scores(frame or records) → (rows, classes) probabilities, or (rows,) values for regression, from an
        export folder. Default: model.onnx's logits through softmax / sigmoid."""
        from ..export import onnx_format

        session = onnx_format.session(Path(folder) / onnx_format.FILE, threads)
        feeds = cls.onnx_feeds(Path(folder), manifest["preprocessing"])
        kind, width = manifest["kind"], len(manifest.get("classes") or [])

        def scores(frame: pd.DataFrame | list[dict[str, Any]]):
            if not isinstance(frame, pd.DataFrame):  # a server's records
                frame = pd.DataFrame.from_records(frame, columns=manifest.get("inputs"))
            out = np.zeros((len(frame), width), dtype=np.float64)
            for rows, feed in feeds(frame):
                out[rows] = activate(session.run(None, feed)[0].astype(np.float64), kind)
            return out

        return scores

    @classmethod
    def exported_runtime(cls, folder: Path, manifest: dict[str, Any], threads: int = 0):
        """predict(frame or records) → Prediction for an export of a non-ONNX format; None: the ONNX scorer."""
        return None

    @classmethod
    def draw_predictions(cls, frame: pd.DataFrame, prediction: Prediction, folder: Path) -> int:
        """`dojo predict --draw FOLDER`: write the rows' images with their predictions drawn; return how many."""
        from ..errors import ConfigError

        raise ConfigError(f"--draw: the {cls.name} task has nothing to draw (detection models draw their boxes)")

    @classmethod
    def default_params(cls, config: Config) -> dict[str, Any]:
        """Values `model.params.<name>` takes when the config leaves it out (tuning's baseline trial)."""
        return {}

    # -- the model ---------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: pd.DataFrame, y_train: pd.Series, validation: pd.DataFrame | None,
            y_validation: pd.Series | None, events: EventBus) -> dict[str, Any]:
        """Fit on the training rows (y already validated for the kind); return facts for the run."""

    @abstractmethod
    def predict(self, frame: pd.DataFrame) -> Prediction: ...

    @property
    @abstractmethod
    def input_columns(self) -> list[str]:
        """The columns predict() reads (checked before predicting, listed in the model card)."""

    def feature_importance(self) -> dict[str, float] | None:
        return None

    def embeddings(self, frame: pd.DataFrame) -> np.ndarray | None:
        """One vector per row from the model's own encoder (text): `dojo monitor` tests drift of free text on
        them; None = the task has none (its columns are tested one by one)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the model is, for the model card and `dojo runs`."""
        return {"task": self.name, "kind": self.kind, "target": self.target}

    # -- persistence (safe formats only: no pickle) -------------------------------------
    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the model into an empty directory (the caller makes it atomic)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> "Task": ...


def activate(logits, kind: str):
    """Logits → probabilities: independent sigmoids for multilabel, softmax otherwise."""
    if kind == "multilabel":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)
