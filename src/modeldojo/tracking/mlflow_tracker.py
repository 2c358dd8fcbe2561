"""MLflow tracking as an event subscriber.

Default backend: an embedded SQLite file, runs/mlflow.db — no server to start. Metrics are
buffered and sent with log_batch: one log_metric call costs ~3 ms on SQLite, a batch of 1000 ~65 ms.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..evaluation.metrics import scalar

MAX_PARAM_LENGTH = 500


def default_uri(runs_dir: str | Path) -> str:
    return f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


def _flatten(config: dict[str, Any]) -> dict[str, str]:
    flat = {}
    for section, values in config.items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = str(value)[:MAX_PARAM_LENGTH]
    return flat


class MlflowTracker:
    def __init__(self, uri: str, experiment: str, runs_dir: str | Path) -> None:
        import os

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow 3.17 reports usage unless told not to
        from mlflow.tracking import MlflowClient

        # mlflow sets its loggers to INFO on import; schema migrations would print on first use.
        for noisy in ("alembic", "mlflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            # Artifacts beside the database, not in ./mlruns of whatever folder the user is in.
            location = (Path(runs_dir).resolve() / "mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id
        self.mlflow_run_id: str | None = None
        self._metrics: list = []

    def on_run_started(self, run, config, **_: Any) -> None:
        from mlflow.entities import Param, RunTag

        created = self.client.create_run(self.experiment_id, run_name=run.name,
                                         tags={"modeldojo.run_dir": str(run.directory.resolve())})
        self.mlflow_run_id = created.info.run_id
        params = [Param(k, v) for k, v in _flatten(config.to_dict()).items()]
        for start in range(0, len(params), 100):  # MLflow caps params per batch at 100
            self.client.log_batch(self.mlflow_run_id, params=params[start:start + 100])
        self.client.log_batch(self.mlflow_run_id, tags=[RunTag("modeldojo.task", config.task.name)])

    def on_metrics(self, metrics: dict[str, Any], step: int | None = None, prefix: str = "", **_: Any) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        for key, value in scalar(metrics).items():
            self._metrics.append(Metric(f"{prefix}{key}", value, stamp, step or 0))

    def flush(self) -> None:
        if self.mlflow_run_id and self._metrics:
            for start in range(0, len(self._metrics), 1000):
                self.client.log_batch(self.mlflow_run_id, metrics=self._metrics[start:start + 1000])
            self._metrics = []

    def on_run_completed(self, run, **_: Any) -> None:
        if not self.mlflow_run_id:
            return
        self.flush()
        for name in ("metrics.json", "report.html", "MODEL_CARD.md", "config.yaml", "checks.json"):
            path = run.directory / name
            if path.is_file():
                self.client.log_artifact(self.mlflow_run_id, str(path))
        self.client.set_terminated(self.mlflow_run_id, "FINISHED")

    def on_run_failed(self, run, error, **_: Any) -> None:
        if self.mlflow_run_id:
            self.flush()
            self.client.set_tag(self.mlflow_run_id, "modeldojo.error", str(error)[:5000])
            self.client.set_terminated(self.mlflow_run_id, "FAILED")
