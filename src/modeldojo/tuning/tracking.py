"""MLflow for a study: one parent run, and every trial a child run under it (params, score, metrics, state).

Workers log their own trials as they finish, under the parent run their coordinator passes them. The
parent's id is also kept in the study's user attributes (keyed by tracking URI), so a resumed study goes on
logging under the same parent run.
Tracking must never cost a trial: a failure to log is a warning, not an error.
"""
from __future__ import annotations

import hashlib
import warnings
from typing import Any

from ..evaluation.metrics import scalar
from ..tracking.mlflow_tracker import MlflowTracker, default_uri

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def _parent_key(uri: str) -> str:
    return "mlflow_parent_run:" + hashlib.sha1(uri.encode()).hexdigest()[:12]


class StudyTracker:
    def __init__(self, config, parent_id: str | None = None) -> None:
        self.uri = config.tracking.uri or default_uri(config.run.runs_dir)
        self.tracker = MlflowTracker(self.uri, config.tracking.experiment, config.run.runs_dir)
        self.client = self.tracker.client
        self.parent_id = parent_id

    def start(self, study, run, config) -> None:
        """Create the study's parent run, or reuse the one a resumed study already has in this store."""
        key = _parent_key(self.uri)
        existing = study.user_attrs.get(key)
        if existing:
            try:
                self.client.update_run(existing, status="RUNNING")
                self.parent_id = existing
                return
            except Exception:  # noqa: BLE001 — another machine's local store (same path, other disk)
                pass
        self.tracker.on_run_started(run=run, config=config)
        self.parent_id = self.tracker.mlflow_run_id
        self.client.set_tag(self.parent_id, "modeldojo.kind", "tune")
        if not existing:
            study.set_user_attr(key, self.parent_id)

    def log_trial(self, study, trial) -> None:
        if not self.parent_id:
            return
        try:
            self._log_trial(trial)
        except Exception as error:  # noqa: BLE001 — a tracking hiccup (locked DB, server down) must not stop tuning
            warnings.warn(f"MLflow: trial {trial.number} not logged: {error}", stacklevel=2)

    def _log_trial(self, trial) -> None:
        from mlflow.entities import Metric, Param

        started = int(trial.datetime_start.timestamp() * 1000) if trial.datetime_start else None
        child = self.client.create_run(self.tracker.experiment_id, start_time=started,
                                       run_name=f"trial-{trial.number}",
                                       tags={"mlflow.parentRunId": self.parent_id,
                                             "modeldojo.trial": str(trial.number),
                                             "modeldojo.trial_state": trial.state.name.lower()})
        run_id = child.info.run_id
        stamp = int(trial.datetime_complete.timestamp() * 1000) if trial.datetime_complete else started or 0
        metrics = [Metric(name, value, stamp, 0) for name, value in scalar(trial.user_attrs).items()]
        if trial.value is not None:
            metrics.append(Metric("objective", float(trial.value), stamp, 0))
        # The pruner's view of the trial: the reported intermediate values as a curve.
        metrics += [Metric("intermediate", float(value), stamp, int(step))
                    for step, value in trial.intermediate_values.items()]
        params = [Param(key, str(value)[:500]) for key, value in trial.params.items()]
        self.client.log_batch(run_id, metrics=metrics[:1000], params=params)
        if trial.user_attrs.get("error"):
            self.client.set_tag(run_id, "modeldojo.error", str(trial.user_attrs["error"]))
        self.client.set_terminated(run_id, STATUS.get(trial.state.name, "FAILED"), end_time=stamp or None)

    def finish(self, run, best: dict[str, Any] | None, failed: str | None = None) -> None:
        if not self.parent_id:
            return
        from mlflow.entities import Metric

        if best:
            self.client.log_batch(self.parent_id, metrics=[Metric(f"best_{best['metric']}", best["value"], 0, 0)])
            self.client.set_tag(self.parent_id, "modeldojo.best_trial", str(best["trial"]))
        for name in ("study.json", "trials.csv", "best.yaml", "report.html"):
            path = run.directory / name
            if path.is_file():
                self.client.log_artifact(self.parent_id, str(path))
        if failed:
            self.client.set_tag(self.parent_id, "modeldojo.error", failed[:5000])
        self.client.set_terminated(self.parent_id, "FAILED" if failed else "FINISHED")
