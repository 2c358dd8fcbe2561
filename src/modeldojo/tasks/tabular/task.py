"""The tabular task: preprocessing + one learner, with early stopping and a full-data refit."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ...data.balance import sample_weights
from ...errors import ConfigError
from ...evaluation import metrics as metrics_module
from ...events import INTERMEDIATE, PROGRESS, STAGE, EventBus
from ..base import TASKS, Prediction, Task
from .learners import LEARNERS, scaled_rounds
from .preprocess import Preprocessor

DEFAULT_LEARNER = "lightgbm"
STATE_FILE = "tabular.json"
SKEW_FOR_LOG = 0.75  # right-skew above which a positive target is modelled on the log scale


@TASKS.register("tabular")
class TabularTask(Task):
    name = "tabular"

    @classmethod
    def detect(cls, frame, target):
        return 0.5  # the fallback for any table; text/image tasks claim their data with higher scores

    @classmethod
    def example(cls, kind: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        rows = 240
        frame = pd.DataFrame({
            "size": rng.normal(100, 20, rows).round(1),
            "rooms": rng.integers(1, 6, rows),
            "city": rng.choice(["north", "south", "east"], rows),
            "built": pd.date_range("2000-01-01", periods=rows, freq="7D").strftime("%Y-%m-%d"),
        })
        signal = frame["size"] / 20 + frame["rooms"] + frame["city"].map({"north": 2, "south": 0, "east": -1})
        if kind == "regression":
            frame["price"] = (signal * 1000 + rng.normal(0, 300, rows)).round(0)
        elif kind == "binary":
            frame["price"] = np.where(signal + rng.normal(0, 0.5, rows) > signal.median(), "high", "low")
        else:
            frame["price"] = pd.qcut(signal + rng.normal(0, 0.3, rows), 3, labels=["low", "mid", "high"]).astype(str)
        return frame, "price", {}

    # Native argument names of each booster (model.params.<name>), the usual ranges.
    SPACES: ClassVar[dict[str, dict[str, Any]]] = {
        # LightGBM's scikit-learn names, as in its DEFAULTS, so the baseline trial can start from them.
        "lightgbm": {"model.params.num_leaves": {"int": [8, 128]},
                     "model.params.learning_rate": {"loguniform": [0.01, 0.2]},
                     "model.params.min_child_samples": {"int": [5, 100]},
                     "model.params.colsample_bytree": {"uniform": [0.3, 1.0]}},
        "xgboost": {"model.params.max_depth": {"int": [3, 10]}, "model.params.eta": {"loguniform": [0.01, 0.3]},
                    "model.params.subsample": {"uniform": [0.5, 1.0]},
                    "model.params.colsample_bytree": {"uniform": [0.5, 1.0]}},
        "catboost": {"model.params.depth": {"int": [4, 10]},
                     "model.params.learning_rate": {"loguniform": [0.01, 0.3]},
                     "model.params.l2_leaf_reg": {"loguniform": [1.0, 10.0]}},
    }

    @classmethod
    def search_space(cls, config, kind):
        return dict(cls.SPACES.get("lightgbm" if config.model.name == "auto" else config.model.name, {}))

    @classmethod
    def default_params(cls, config):
        learner = LEARNERS.get(DEFAULT_LEARNER if config.model.name == "auto" else config.model.name)
        return dict(getattr(learner, "DEFAULTS", {}))

    # -- fitting -------------------------------------------------------------------------
    def fit(self, train, y_train, validation, y_validation, events: EventBus) -> dict[str, Any]:
        model, settings = self.config.model, self.config.train
        self.learner_name = DEFAULT_LEARNER if model.name == "auto" else model.name
        learner_class = LEARNERS.get(self.learner_name)
        self.preprocessor = Preprocessor().fit(train)
        X_train, _ = self.preprocessor.transform(train)
        has_validation = validation is not None and len(validation) > 0
        X_val = self.preprocessor.transform(validation)[0] if has_validation else None

        if self.kind == "regression":
            self.target_transform = self._choose_transform(y_train)
            target_train = self._forward(y_train.to_numpy(float))
            target_val = self._forward(y_validation.to_numpy(float)) if has_validation else None
            weights_train = weights_val = None
        else:
            present = set(y_train) | (set(y_validation) if has_validation else set())
            self.classes = sorted(present)
            codes = {label: index for index, label in enumerate(self.classes)}
            target_train = y_train.map(codes).to_numpy(int)
            target_val = y_validation.map(codes).to_numpy(int) if has_validation else None
            self.target_transform = "none"
            weights_train = sample_weights(y_train, self.config.data.class_weights)
            # Weighted or not as the training rows are ("auto" decides on them): the refit joins both sets.
            weights_val = sample_weights(y_validation, "balanced") \
                if has_validation and weights_train is not None else None

        def make():
            learner = learner_class(self.kind, len(self.classes or []), model.params, settings.seed, settings.threads,
                                    self.preprocessor.categorical_columns, max_rounds=settings.max_rounds)
            learner.on_round = lambda done, total: events.emit(PROGRESS, name="boosting rounds", completed=done,
                                                               total=total)
            return learner

        events.emit(STAGE, name="fit", detail=f"{self.learner_name} on {len(train)} rows, "
                                               f"{len(self.preprocessor.output_columns)} features")
        self.learner = make()
        early = learner_class.supports_early_stopping and has_validation and settings.early_stopping_rounds > 0
        info: dict[str, Any] = {"learner": self.learner_name, "target_transform": self.target_transform,
                                "features": len(self.preprocessor.output_columns)}
        if early and events.has_subscribers(INTERMEDIATE):  # tuning prunes on these
            self.learner.on_validation = lambda done, predictions=None, metrics=None: events.emit(
                INTERMEDIATE, step=done, metrics=metrics if predictions is None
                else self._validation_scores(predictions, y_validation))
        if early:
            self.learner.fit(X_train, target_train, weights_train, X_val, target_val,
                             patience=settings.early_stopping_rounds)
            info["best_rounds"] = self.learner.best_rounds
        if has_validation and settings.refit_full:
            # Early stopping chose the round count; the final model also learns from the validation rows.
            rounds = scaled_rounds(self.learner.best_rounds, len(X_train), len(X_train) + len(X_val)) if early else None
            X_all = pd.concat([X_train, X_val])
            y_all = np.concatenate([target_train, target_val])
            w_all = None if weights_train is None else np.concatenate([weights_train, weights_val])
            events.emit(STAGE, name="refit", detail=f"train+validation ({len(X_all)} rows)" +
                        (f", {rounds} rounds" if rounds else ""))
            self.learner = make()
            self.learner.fit(X_all, y_all, w_all, rounds=rounds)
            info["refit_rows"] = len(X_all)
        elif not early:
            self.learner.fit(X_train, target_train, weights_train)
        info["rounds"] = self.learner.best_rounds
        return info

    def _validation_scores(self, raw: np.ndarray, y_validation: pd.Series) -> dict[str, float]:
        if self.kind == "regression":
            return metrics_module.scalar(metrics_module.compute("regression", y_validation.to_numpy(float),
                                                                self._inverse(raw)))
        labels = np.asarray(self.classes, dtype=object)[np.argmax(raw, axis=1)]
        return metrics_module.scalar(metrics_module.compute(self.kind, y_validation.to_numpy(), labels, raw,
                                                            list(self.classes)))

    def _choose_transform(self, y: pd.Series) -> str:
        requested = self.config.model.target_transform
        if requested != "auto":
            if requested == "log" and y.min() <= -1:
                raise ConfigError("model.target_transform: 'log' needs a target above -1; got minimum "
                                  f"{y.min():g}")
            return requested
        return "log" if y.min() >= 0 and y.skew() > SKEW_FOR_LOG else "none"

    def _forward(self, values: np.ndarray) -> np.ndarray:
        return np.log1p(values) if self.target_transform == "log" else values

    def _inverse(self, values: np.ndarray) -> np.ndarray:
        return np.expm1(values) if self.target_transform == "log" else values

    # -- predicting ----------------------------------------------------------------------
    def predict(self, frame: pd.DataFrame) -> Prediction:
        X, unseen = self.preprocessor.transform(frame)
        raw = self.learner.predict_raw(X)
        notes = {"unseen_categories": unseen} if unseen else {}
        if self.kind == "regression":
            return Prediction(self._inverse(raw), notes=notes)
        labels = np.asarray(self.classes, dtype=object)[np.argmax(raw, axis=1)]
        return Prediction(labels, raw, list(self.classes), notes)

    @property
    def input_columns(self):
        return list(self.preprocessor.columns)

    # -- export (export.py: which learners become ONNX, which stay native) ---------------
    quantizable = False  # trees have thresholds, not weights: nothing for int8 / fp16 to shrink

    def export_onnx(self, folder: Path) -> dict[str, Any]:
        from . import export

        return export.export(self, folder)

    def export_fallback(self, folder: Path) -> dict[str, Any]:
        from . import export

        return export.export_native(self, folder, "the ONNX conversion failed the parity check (tree thresholds "
                                                  "rounded to float32)")

    @classmethod
    def exported_scorer(cls, folder: Path, manifest: dict[str, Any], threads: int = 0):
        from . import export

        return export.scorer(folder, manifest, threads)

    def feature_importance(self):
        scores = self.learner.feature_importance(self.preprocessor.output_columns)
        if not scores:
            return None
        total = sum(scores.values()) or 1.0
        return dict(sorted(((k, v / total) for k, v in scores.items()), key=lambda kv: -kv[1]))

    def describe(self):
        return {**super().describe(), "learner": self.learner_name, "target_transform": self.target_transform,
                "features": self.preprocessor.output_columns, "rounds": self.learner.best_rounds,
                "classes": self.classes}

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        state = {"learner": self.learner_name, "kind": self.kind, "classes": self.classes,
                 "target_transform": self.target_transform, "preprocessor": self.preprocessor.to_dict(),
                 "categorical": self.preprocessor.categorical_columns}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        self.learner.save(directory)

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> "TabularTask":
        from ...config import Config

        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        config = Config.from_dict(meta.get("config", {}))
        task = cls(config, state["kind"], meta["target"])
        task.learner_name, task.classes = state["learner"], state["classes"]
        task.target_transform = state["target_transform"]
        task.preprocessor = Preprocessor.from_dict(state["preprocessor"])
        learner_class = LEARNERS.get(task.learner_name)
        task.learner = learner_class(task.kind, len(task.classes or []), config.model.params, config.train.seed,
                                     config.train.threads, state["categorical"])
        task.learner.load_model(directory)
        return task
