"""Model versions on MLflow's model registry: a run registered under a name becomes version N; the aliases
`champion` (what `dojo serve models:/NAME@champion` serves) and `challenger` (a candidate) point at versions; a
promotion remembers the champion it replaced, so `rollback` can put it back.

(Not called "registry": that word already means the plugin registry of tasks and learners.)

MLflow 3 on the embedded SQLite file the runs are tracked in: `create_model_version(source=…, run_id=…)` (a plain
`register_model("runs:/…")` fails for runs whose model is a folder artifact), aliases instead of the deprecated
stages. A version's source is the run's model folder; its tags name the run folder, the task and the test metrics.
Only completed runs can be registered: nothing is promoted from a failed or partial run.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError, NotFoundError

CHAMPION, CHALLENGER = "champion", "challenger"
PREVIOUS = "modeldojo.previous_champion"  # tag on a version: the champion it replaced when it was promoted
RUN_DIR = "modeldojo.run_dir"
URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")


def client(runs_dir: str | Path = "runs", uri: str | None = None):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow 3.17 reports usage unless told not to
    from mlflow.tracking import MlflowClient

    from .tracking.mlflow_tracker import default_uri

    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri or default_uri(runs_dir), registry_uri=uri or default_uri(runs_dir))


def _mlflow_run_id(mlflow, run_directory: Path) -> str | None:
    """The MLflow run that tracked this run folder (None when tracking was off)."""
    try:
        found = mlflow.search_runs(experiment_ids=[e.experiment_id for e in mlflow.search_experiments()],
                                   filter_string=f"tags.`{RUN_DIR}` = '{run_directory.resolve()}'", max_results=1)
    except Exception:  # noqa: BLE001 - no experiments yet, an older database: register without the link
        return None
    return found[0].info.run_id if found else None


def register(reference: str | Path, name: str, *, runs_dir: str | Path = "runs", alias: str | None = None,
             uri: str | None = None) -> dict[str, Any]:
    """Register a completed run as the next version of `name`. Alias: champion when the model has none yet,
    else challenger (unless one is given)."""
    from .runs import Run

    run = Run.open(reference, runs_dir)
    status = run.status()
    if status.get("status") != "completed":
        raise ConfigError(f"run {run.name} is {status.get('status')}: only completed runs can be registered")
    mlflow = client(runs_dir, uri)
    from mlflow.exceptions import MlflowException

    try:
        mlflow.get_registered_model(name)
    except MlflowException:
        mlflow.create_registered_model(name, tags={"modeldojo.task": str(status.get("task"))})
    metrics = (run.read_json("metrics.json") or {}).get("test", {})
    tags = {RUN_DIR: str(run.directory.resolve()), "modeldojo.task": str(status.get("task")),
            "modeldojo.kind": str(status.get("kind")),
            **{f"metric.{key}": f"{value:.6g}" for key, value in metrics.items() if isinstance(value, (int, float))}}
    version = mlflow.create_model_version(name, source=run.model_dir.resolve().as_uri(),
                                          run_id=_mlflow_run_id(mlflow, run.directory), tags=tags)
    alias = alias or (CHAMPION if alias_version(mlflow, name, CHAMPION) is None else CHALLENGER)
    if alias == CHAMPION:
        _make_champion(mlflow, name, version.version)
    else:
        mlflow.set_registered_model_alias(name, alias, version.version)
    return {"name": name, "version": int(version.version), "alias": alias, "run": run.name}


def alias_version(mlflow, name: str, alias: str) -> str | None:
    """The version number (as text) the alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.get_model_version_by_alias(name, alias).version)  # an int in MLflow 3.17, a str before
    except MlflowException:
        return None


def _make_champion(mlflow, name: str, version: str) -> str | None:
    previous = alias_version(mlflow, name, CHAMPION)
    if previous is not None and previous != str(version):
        mlflow.set_model_version_tag(name, str(version), PREVIOUS, str(previous))
    mlflow.set_registered_model_alias(name, CHAMPION, str(version))
    if alias_version(mlflow, name, CHALLENGER) == str(version):
        mlflow.delete_registered_model_alias(name, CHALLENGER)
    return previous


def promote(name: str, version: int | str, *, runs_dir: str | Path = "runs", uri: str | None = None,
            decision: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make `version` the champion (the one it replaces is remembered for rollback); `decision` (a retraining
    gate's reasons) is stored as tags on the version."""
    mlflow = client(runs_dir, uri)
    _version(mlflow, name, version)
    previous = _make_champion(mlflow, name, str(version))
    tag_decision(mlflow, name, version, decision or {})
    return {"name": name, "champion": int(version), "previous": int(previous) if previous else None}


def tag_decision(mlflow, name: str, version, decision: dict[str, Any]) -> None:
    """A promotion decision's facts as `modeldojo.decision.*` tags on a version (MLflow caps tag values)."""
    for key, value in decision.items():
        mlflow.set_model_version_tag(name, str(version), f"modeldojo.decision.{key}", str(value)[:5000])


def rollback(name: str, *, runs_dir: str | Path = "runs", uri: str | None = None) -> dict[str, Any]:
    """Put back the champion that the current one replaced."""
    mlflow = client(runs_dir, uri)
    current = alias_version(mlflow, name, CHAMPION)
    if current is None:
        raise NotFoundError(f"model {name!r} has no champion to roll back")
    previous = mlflow.get_model_version(name, current).tags.get(PREVIOUS)
    if not previous:
        raise ConfigError(f"model {name!r}: champion version {current} replaced no earlier champion; nothing to "
                          "roll back to")
    mlflow.set_registered_model_alias(name, CHAMPION, previous)
    mlflow.set_model_version_tag(name, current, "modeldojo.rolled_back", "true")
    return {"name": name, "champion": int(previous), "rolled_back": int(current)}


def versions(name: str, *, runs_dir: str | Path = "runs", uri: str | None = None) -> list[dict[str, Any]]:
    mlflow = client(runs_dir, uri)
    found = sorted(mlflow.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    if not found:
        raise NotFoundError(f"no registered model {name!r} (dojo models register RUN --name {name})")
    aliases: dict[str, list[str]] = {}
    for alias, version in mlflow.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    return [{"version": int(v.version), "aliases": sorted(aliases.get(str(v.version), [])),
             "run": Path(v.tags.get(RUN_DIR, "")).name, "task": v.tags.get("modeldojo.task"),
             "metrics": {k[7:]: float(value) for k, value in v.tags.items() if k.startswith("metric.")},
             "created": v.creation_timestamp} for v in found]


def _version(mlflow, name: str, version) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_model_version(name, str(version))
    except MlflowException:
        raise NotFoundError(f"model {name!r} has no version {version}") from None


def resolve(reference: str, runs_dir: str | Path = "runs", uri: str | None = None) -> Path:
    """`models:/NAME@alias` or `models:/NAME/VERSION` → the run folder of that version."""
    match = URI.match(str(reference))
    if not match:
        raise ConfigError(f"{reference!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    mlflow = client(runs_dir, uri)
    from mlflow.exceptions import MlflowException

    if match["alias"]:
        try:
            version = mlflow.get_model_version_by_alias(match["name"], match["alias"])
        except MlflowException:
            raise NotFoundError(f"{reference}: model {match['name']!r} has no version with alias "
                                f"{match['alias']!r}") from None
    else:
        version = _version(mlflow, match["name"], match["version"])
    folder = Path(version.tags.get(RUN_DIR, ""))
    if not folder.is_dir():
        raise NotFoundError(f"{reference}: version {version.version}'s run folder {folder} is gone")
    return folder
