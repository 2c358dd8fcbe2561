"""`dojo export RUN --format onnx [--quantize int8]`: write the export to a temporary folder, check parity
on the run's validation rows (else its test rows), then move it into place — or refuse it, leaving nothing
half-written, with the parity numbers in the error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, api
from ..config import Config
from ..environment import describe as describe_environment, version
from ..errors import ConfigError, ParityError
from ..model import Model
from ..runs import Run
from . import onnx_format, parity
from .runtime import MANIFEST, ExportedModel

FORMATS = ("onnx",)
QUANTIZE = (None, "int8", "fp16")
PARITY_ROWS = 512  # enough to see a systematic difference; keeps an export quick


def export(reference: str | Path, *, format: str | None = None, quantize: str | None = None,
           out: str | Path | None = None, runs_dir: str | Path = "runs", data=None, max_abs_diff: float | None = None,
           max_metric_drop: float | None = None, force: bool = False) -> dict[str, Any]:
    run = Run.open(reference, runs_dir)
    model = Model.load(run.model_dir)
    config = Config.from_dict(model.meta.get("config", {}))
    task = model._task
    format = format or task.export_formats[0]
    if format not in task.export_formats:
        raise ConfigError(f"--format {format!r}: a {model.meta['task']} model exports as "
                          f"{', '.join(task.export_formats)}")
    if quantize and not task.quantizable:
        raise ConfigError(f"--quantize {quantize}: the {model.meta['task']} task's model has no weights to "
                          "quantize (trees compare thresholds; forecasts are data files); export it without "
                          "--quantize")
    if format != "onnx" or not task.onnx_shared_parity:  # the task's own format, quantizations and parity check
        return _export_other(run, model, config, task, format, quantize, out, data, force)
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize {quantize!r}: int8 or fp16 (or leave it out for fp32)")
    target = Path(out) if out else run.directory / "export" / (format + (f"-{quantize}" if quantize else ""))
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        preprocessing = task.export_onnx(partial)
        if quantize == "int8":
            onnx_format.quantize_int8(partial / onnx_format.FILE)
        elif quantize == "fp16":
            onnx_format.quantize_fp16(partial / onnx_format.FILE)
        manifest = {"format": format, "quantize": quantize, "task": model.meta["task"], "kind": model.kind,
                    "target": model.target, "classes": getattr(task, "classes", None), "inputs": task.input_columns,
                    "preprocessing": preprocessing, "normalization": model.meta.get("normalization"),
                    "source_run": str(run.directory.resolve()),
                    "modeldojo": __version__, "onnxruntime": version("onnxruntime"),
                    "environment": describe_environment().get("packages", {})}
        tolerance = dict(parity.TOLERANCES[quantize])
        tolerance.update({k: v for k, v in {"max_abs_diff": max_abs_diff, "max_metric_drop": max_metric_drop}.items()
                          if v is not None})
        frame, y = _parity_rows(run, model, config, data)

        def check() -> parity.ParityReport:
            return parity.check(task, ExportedModel(partial, manifest), frame, y, model.kind,
                                config.data.label_separator, tolerance)

        report = check()
        if not report.passed and task.export_fallback is not None and preprocessing.get("backend") == "onnx":
            # A converter that rounds (tree thresholds to float32) is caught here; the task's exact
            # alternative (the learner's native file) replaces it, and the manifest keeps both reports.
            for path in partial.iterdir():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            manifest["preprocessing"] = {**task.export_fallback(partial), "rejected_onnx_parity": report.to_dict()}
            report = check()
        manifest["parity"] = report.to_dict()
        _accept(run, partial, target, manifest, report, force)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {"folder": str(target), "parity": manifest["parity"], "forced": not report.passed}


def _export_other(run: Run, model: Model, config: Config, task, format: str, quantize: str | None, out, data,
                  force: bool) -> dict[str, Any]:
    target = Path(out) if out else run.directory / "export" / (format + (f"-{quantize}" if quantize else ""))
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        frame, y = _parity_rows(run, model, config, data)
        details, report = task.export_format(partial, format, quantize, frame, y)
        manifest = {"format": format, "quantize": quantize, "task": model.meta["task"], "kind": model.kind,
                    "target": model.target, "classes": getattr(task, "classes", None),
                    "inputs": task.input_columns,
                    "preprocessing": details, "config": model.meta.get("config", {}),
                    "normalization": model.meta.get("normalization"),
                    "source_run": str(run.directory.resolve()), "modeldojo": __version__,
                    "environment": describe_environment().get("packages", {}), "parity": report.to_dict()}
        _accept(run, partial, target, manifest, report, force)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {"folder": str(target), "parity": manifest["parity"], "forced": not report.passed,
            "summary": report.explain()}


def _accept(run: Run, partial: Path, target: Path, manifest: dict[str, Any], report, force: bool) -> None:
    """Write the manifest; refuse the export when parity failed (unless forced), else move it into place."""
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    if not report.passed and not force:
        run.write_json("export_parity_failed.json", manifest["parity"])
        raise ParityError(f"export refused, parity failed {report.explain()}; numbers in "
                          f"{run.directory / 'export_parity_failed.json'}; --force exports anyway")
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)


def _parity_rows(run: Run, model: Model, config: Config, data):
    source = data if data is not None else config.data.path
    if source is None:
        raise ConfigError(f"run {run.name} was trained from an in-memory DataFrame: pass --data FILE (labelled "
                          "rows) for the parity check")
    prepared = api.prepare(source, config, run_checks=False)
    if data is None:
        from ..reevaluation import _require_same_data

        _require_same_data(run, prepared, config)
        _, validation_rows, test_rows = api._split(prepared)
        rows = validation_rows if len(validation_rows) else test_rows
    else:
        rows = np.arange(len(prepared.frame))
    rows = rows[:PARITY_ROWS]
    return prepared.frame.iloc[rows][model.features], prepared.y.iloc[rows]
