"""Tabular learners behind one small interface, each saved in its library's native format.

y arrives encoded: floats for regression, integer codes 0..k-1 for classification.
`predict_raw` returns values (regression) or a (rows, k) probability matrix.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ...registry import Registry

LEARNERS: Registry[type["Learner"]] = Registry("tabular learner (model.name)")
# Rounds used when there is no validation split to early-stop on.
ROUNDS_WITHOUT_VALIDATION = 1000
# How often (in boosting rounds) validation scores go to `on_validation` while tuning prunes: each report
# computes the metrics (~3 ms): every 10 rounds added up to 50 % to a LightGBM fit on Ames, every 25 is within
# noise (scripts/booster_report_cost.py).
REPORT_EVERY = 25
# CatBoost cannot predict mid-fit, but computes these metrics on the eval set itself (our name → its name).
CATBOOST_METRICS = {"regression": {"rmse": "RMSE", "mae": "MAE", "r2": "R2"},
                    "binary": {"roc_auc": "AUC", "accuracy": "Accuracy", "f1_macro": "TotalF1:average=Macro",
                               "log_loss": "Logloss"},
                    "multiclass": {"accuracy": "Accuracy", "f1_macro": "TotalF1:average=Macro",
                                   "log_loss": "MultiClass"}}


class Learner:
    name: ClassVar[str]
    supports_early_stopping: ClassVar[bool] = False

    def __init__(self, kind: str, n_classes: int, params: dict[str, Any], seed: int, threads: int,
                 categorical: list[str], max_rounds: int = 5000) -> None:
        self.kind, self.n_classes, self.seed, self.threads = kind, n_classes, seed, threads
        self.max_rounds = max_rounds
        self.params, self.categorical = dict(params), list(categorical)
        self.best_rounds: int | None = None
        self.on_round = None  # optional callable(completed, total) for progress display
        # Optional callable(round, predictions=raw matrix | None, metrics=dict | None), every REPORT_EVERY
        # rounds of an early-stopping fit: validation scores for tuning's pruner.
        self.on_validation = None

    def fit(self, X: pd.DataFrame, y: np.ndarray, weights: np.ndarray | None, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None, *, rounds: int | None = None, patience: int = 0) -> None:
        raise NotImplementedError

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict_codes(self, matrix: np.ndarray, preprocessor) -> np.ndarray:
        """predict_raw from `Preprocessor.encode`'s matrix (categoricals as codes, NaN = missing): the frame
        predict_raw takes, rebuilt; learners that read codes directly skip that."""
        frame = pd.DataFrame(matrix, columns=preprocessor.output_columns)
        for column in preprocessor.categorical_columns:
            codes = frame[column].to_numpy()
            frame[column] = pd.Categorical.from_codes(np.where(np.isnan(codes), -1, codes).astype(int),
                                                      categories=preprocessor.columns[column]["categories"])
        return self.predict_raw(frame)

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    def load_model(self, directory: Path) -> None:
        raise NotImplementedError

    def feature_importance(self, columns: list[str]) -> dict[str, float] | None:
        return None

    def _as_matrix(self, raw: np.ndarray) -> np.ndarray:
        """Binary learners give P(class 1); make every classifier return (rows, k)."""
        raw = np.asarray(raw, dtype=float)
        if self.kind == "regression":
            return raw.reshape(-1)
        if raw.ndim == 1:
            return np.column_stack([1 - raw, raw])
        return raw


@LEARNERS.register("lightgbm")
class LightGBMLearner(Learner):
    name = "lightgbm"
    supports_early_stopping = True
    # Measured on Ames (bench/tabular.py): with a log target these beat LightGBM's and
    # HistGradientBoosting's defaults; small leaves + column subsampling suit tables of 1k–100k rows.
    DEFAULTS = dict(learning_rate=0.03, num_leaves=15, min_child_samples=10, subsample=0.8, subsample_freq=1,
                    colsample_bytree=0.5, reg_lambda=1.0, verbose=-1)

    def _params(self) -> dict[str, Any]:
        objective = {"regression": {"objective": "regression"}, "binary": {"objective": "binary"},
                     "multiclass": {"objective": "multiclass", "num_class": self.n_classes}}[self.kind]
        threads = {"num_threads": self.threads} if self.threads else {}
        params = {**self.DEFAULTS, **objective, "seed": self.seed, "deterministic": True, **threads, **self.params}
        params.pop("n_estimators", None)
        return params

    def fit(self, X, y, weights, X_val=None, y_val=None, *, rounds=None, patience=0):
        import lightgbm as lgb

        train = lgb.Dataset(X, y, weight=weights, free_raw_data=False)
        callbacks, valid_sets, extra = [], [], {}
        if X_val is not None and rounds is None and patience:
            valid_sets = [lgb.Dataset(X_val, y_val, reference=train)]
            # first_metric_only: early stopping follows the objective's own metric, not the reporter below.
            callbacks.append(lgb.early_stopping(patience, first_metric_only=True, verbose=False))
        total = rounds or self.params.get("n_estimators") or (self.max_rounds if valid_sets else ROUNDS_WITHOUT_VALIDATION)
        if self.on_validation and valid_sets:
            # LightGBM keeps the validation predictions up to date as it boosts and hands them to a custom
            # metric: reading them there is free, where predicting again every 10 rounds doubled a trial's time.
            rounds = itertools.count(1)  # the custom metric is called once per round

            def report(predictions, _data):
                rounds_done = next(rounds)
                if rounds_done % REPORT_EVERY == 0:
                    self.on_validation(rounds_done, predictions=self._as_matrix(predictions))
                return "dojo_report", 0.0, True
            extra["feval"] = report
        if self.on_round:
            callbacks.append(lambda env: self.on_round(env.iteration + 1, env.end_iteration))
        self.booster = lgb.train(self._params(), train, num_boost_round=total, valid_sets=valid_sets,
                                 callbacks=callbacks, **extra)
        self.best_rounds = self.booster.best_iteration or self.booster.current_iteration()

    def predict_raw(self, X):
        return self._as_matrix(self.booster.predict(X, num_iteration=self.best_rounds))

    def predict_codes(self, matrix, preprocessor):
        # A numpy matrix is what LightGBM makes of a pandas frame itself (categories → codes, missing → NaN).
        return self._as_matrix(self.booster.predict(matrix, num_iteration=self.best_rounds))

    def save(self, directory):
        self.booster.save_model(str(directory / "model.lgb.txt"), num_iteration=self.best_rounds)

    def load_model(self, directory):
        import lightgbm as lgb

        self.booster = lgb.Booster(model_file=str(directory / "model.lgb.txt"))
        self.best_rounds = self.booster.current_iteration()

    def feature_importance(self, columns):
        return dict(zip(columns, self.booster.feature_importance("gain").astype(float)))


@LEARNERS.register("xgboost")
class XGBoostLearner(Learner):
    name = "xgboost"
    supports_early_stopping = True
    DEFAULTS = dict(eta=0.03, max_depth=5, subsample=0.8, colsample_bytree=0.5, min_child_weight=1,
                    tree_method="hist", max_cat_to_onehot=1)

    def _params(self):
        objective = {"regression": {"objective": "reg:squarederror"},
                     "binary": {"objective": "binary:logistic", "eval_metric": "logloss"},
                     "multiclass": {"objective": "multi:softprob", "num_class": self.n_classes,
                                    "eval_metric": "mlogloss"}}[self.kind]
        threads = {"nthread": self.threads} if self.threads else {}
        params = {**self.DEFAULTS, **objective, "seed": self.seed, **threads, **self.params}
        params.pop("n_estimators", None)
        return params

    def fit(self, X, y, weights, X_val=None, y_val=None, *, rounds=None, patience=0):
        import xgboost as xgb

        train = xgb.DMatrix(X, y, weight=weights, enable_categorical=True)
        kwargs: dict[str, Any] = {}
        early = X_val is not None and rounds is None and patience
        if early:
            kwargs = {"evals": [(xgb.DMatrix(X_val, y_val, enable_categorical=True), "validation")],
                      "early_stopping_rounds": patience, "verbose_eval": False}
        total = rounds or self.params.get("n_estimators") or (self.max_rounds if early else ROUNDS_WITHOUT_VALIDATION)
        callbacks = [_XGBoostProgress(self.on_round, total)] if self.on_round else []
        if self.on_validation and early:
            matrix = kwargs["evals"][0][0]
            callbacks.append(_XGBoostValidation(
                lambda model, done: self.on_validation(done, predictions=self._as_matrix(
                    model.predict(matrix, iteration_range=(0, done))))))
        if callbacks:
            kwargs["callbacks"] = callbacks
        booster = xgb.train(self._params(), train, num_boost_round=total, **kwargs)
        if early:
            self.best_rounds = booster.best_iteration + 1
            booster = booster[: self.best_rounds]
        else:
            self.best_rounds = booster.num_boosted_rounds()
        self.booster = booster

    def predict_raw(self, X):
        import xgboost as xgb

        return self._as_matrix(self.booster.predict(xgb.DMatrix(X, enable_categorical=True)))

    def save(self, directory):
        self.booster.save_model(str(directory / "model.xgb.json"))

    def load_model(self, directory):
        import xgboost as xgb

        self.booster = xgb.Booster()
        self.booster.load_model(str(directory / "model.xgb.json"))
        self.best_rounds = self.booster.num_boosted_rounds()

    def feature_importance(self, columns):
        scores = self.booster.get_score(importance_type="total_gain")
        return {c: float(scores.get(c, 0.0)) for c in columns}


@LEARNERS.register("catboost")
class CatBoostLearner(Learner):
    name = "catboost"
    supports_early_stopping = True
    DEFAULTS = dict(learning_rate=0.05, depth=6)

    def _model(self, rounds, metrics: list[str] | None = None):
        import catboost

        threads = {"thread_count": self.threads} if self.threads else {}
        params = {**self.DEFAULTS, "iterations": rounds, "random_seed": self.seed, "verbose": False,
                  "allow_writing_files": False, **threads, **self.params}
        params.pop("n_estimators", None)
        if metrics:  # computed on the eval set for on_validation; early stopping still follows the loss
            params["custom_metric"] = metrics
        if self.kind == "regression":
            return catboost.CatBoostRegressor(**params)
        loss = "Logloss" if self.kind == "binary" else "MultiClass"
        return catboost.CatBoostClassifier(loss_function=loss, **params)

    def _frame(self, X):
        # CatBoost wants categorical features as strings (it builds its own encodings).
        X = X.copy()
        for column in self.categorical:
            X[column] = X[column].astype(object).where(X[column].notna(), "__missing__").astype(str)
        return X

    def fit(self, X, y, weights, X_val=None, y_val=None, *, rounds=None, patience=0):
        early = X_val is not None and rounds is None and patience
        total = rounds or self.params.get("n_estimators") or (self.max_rounds if early else ROUNDS_WITHOUT_VALIDATION)
        names = CATBOOST_METRICS[self.kind] if self.on_validation and early else {}
        self.model = self._model(total, [name for name in names.values() if name not in ("Logloss", "MultiClass")])
        kwargs: dict[str, Any] = {"cat_features": self.categorical, "sample_weight": weights}
        if early:
            kwargs.update(eval_set=(self._frame(X_val), y_val), early_stopping_rounds=patience, use_best_model=True)
        if names:
            kwargs["callbacks"] = [_CatBoostValidation(self.on_validation, names)]
        self.model.fit(self._frame(X), y, **kwargs)
        self.best_rounds = self.model.tree_count_

    def predict_raw(self, X):
        X = self._frame(X)
        if self.kind == "regression":
            return self.model.predict(X)
        return self.model.predict_proba(X)

    def save(self, directory):
        self.model.save_model(str(directory / "model.cbm"), format="cbm")

    def load_model(self, directory):
        self.model = self._model(1)
        self.model.load_model(str(directory / "model.cbm"), format="cbm")
        self.best_rounds = self.model.tree_count_

    def feature_importance(self, columns):
        return dict(zip(columns, self.model.get_feature_importance().astype(float)))


class _XGBoostValidation:
    """Calls report(model, rounds_done) every REPORT_EVERY rounds (an xgboost TrainingCallback)."""

    def __new__(cls, report):
        import xgboost as xgb

        class Callback(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                if (epoch + 1) % REPORT_EVERY == 0:
                    report(model, epoch + 1)
                return False

        return Callback()


class _CatBoostValidation:
    """CatBoost's after_iteration hook: passes its eval-set metrics on under modeldojo's names."""

    def __init__(self, report, names: dict[str, str]) -> None:
        self.report, self.names = report, names

    def after_iteration(self, info) -> bool:
        done = info.iteration + 1
        if done % REPORT_EVERY == 0:
            values = info.metrics.get("validation", {})
            self.report(done, metrics={ours: values[theirs][-1] for ours, theirs in self.names.items()
                                       if values.get(theirs)})
        return True  # go on training


class _XGBoostProgress:
    """Adapter: XGBoost calls after_iteration on a TrainingCallback; built lazily to keep xgboost optional."""

    def __new__(cls, report, total):
        import xgboost as xgb

        class Callback(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                report(epoch + 1, total)
                return False

        return Callback()


def scaled_rounds(best: int, train_rows: int, all_rows: int) -> int:
    """Round count for a refit on more rows: more data supports proportionally more rounds."""
    return max(1, math.ceil(best * all_rows / max(1, train_rows)))

