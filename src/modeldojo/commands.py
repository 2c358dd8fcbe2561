"""What each `dojo` command does once its arguments are parsed (printing through cli._Output)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from rich.markup import escape
from rich.text import Text

from . import api, environment, runs as runs_module
from .cli import overrides_and_source
from .config import Config
from .errors import ConfigError, DataError
from .evaluation.metrics import PRIMARY, scalar
from .app_command import app  # noqa: F401 (cli dispatches by command name)
from .maintenance_commands import models, monitor, retrain  # noqa: F401 (cli dispatches by command name)


def _runs_dir(args, config: Config | None = None) -> str:
    return args.runs_dir or (config.run.runs_dir if config else "runs")


def _reading_overrides(args) -> dict:
    """Settings of how to read the data: --delimiter, --encoding, and the series layout (--time, --id, --horizon)."""
    pairs = {"forecast.time_column": getattr(args, "time", None), "forecast.id_columns": getattr(args, "id", None),
             "forecast.horizon": getattr(args, "horizon", None)}
    pairs = {key: value for key, value in pairs.items() if value is not None}
    if getattr(args, "delimiter", None):
        pairs["data.delimiter"] = args.delimiter.encode().decode("unicode_escape")  # lets users type \t
    if getattr(args, "encoding", None):
        pairs["data.encoding"] = args.encoding
    return pairs


def _read_for_run(args, out, path):
    """A data file for a run's predict/evaluate/export: --encoding if given, else the run's (api.reading_encoding)."""
    from .tasks import read

    encoding, prefer = (args.encoding, None) if args.encoding else api.reading_encoding(args.run, _runs_dir(args))
    frame = read(path, delimiter=args.delimiter, encoding=encoding, prefer=prefer)
    if frame.attrs.get("encoding_warning"):
        out.say(f"[yellow]![/] {escape(frame.attrs['encoding_warning'])}")
    return frame


def train(args, out) -> int:
    config_path, data, overrides = overrides_and_source(args.inputs)
    config = Config.load(config_path) if config_path else Config()
    flags = {"data.target": args.target, "task.name": args.task, "task.kind": args.kind, "model.name": args.model,
             "run.name": args.name, "train.seed": args.seed, "data.test_fraction": args.test_size,
             "data.validation_path": args.validation_data, "data.test_path": args.test_data,
             "tracking.uri": args.tracking_uri, "run.runs_dir": args.runs_dir, "data.path": data,
             "data.drop_columns": args.drop, "finetune.strategy": args.strategy, "train.epochs": args.epochs,
             "train.max_steps": args.max_steps, "train.learning_rate": args.lr, "train.batch_size": args.batch_size,
             "model.max_length": args.max_length, "model.image_size": args.image_size,
             "data.augment": args.augment, **_reading_overrides(args)}
    if args.resume:
        flags["train.resume"] = True
    if args.no_tracking:
        flags["tracking.enabled"] = False
    if args.overwrite:
        flags["run.overwrite"] = True
    config = config.with_overrides({k: v for k, v in flags.items() if v is not None}).with_overrides(overrides)
    bus = out.progress()
    bus.subscribe("checks_done", lambda report, **_: _print_findings(out, report))
    bus.subscribe("run_started", lambda run, config, **_: out.say(
        f"[cyan]•[/] run [bold]{run.name}[/]: task {config.task.name} ({config.task.kind})"))
    from .training import stopping

    with stopping.on_signals():  # SIGTERM (dojo app's Stop): checkpoint, mark the run stopped, exit 8
        result = api.train(config=config, events=bus)
    if result.model is None:  # a worker process of a multi-process launch: process 0 reports
        return 0
    metrics = scalar(result.metrics)
    out.table(f"Test metrics ({result.metrics.get('rows', 0)} rows)", ["metric", "value"],
              [[k, v] for k, v in metrics.items() if k != "rows"])
    out.say(f"[green]✓[/] run saved to [bold]{escape(str(result.path))}[/]; "
            f"report: {escape(str(result.path / 'report.html'))}")
    out.result({"run": result.run.name, "path": str(result.path), "metrics": metrics, "fit": result.info,
                "warnings": [f.message for f in result.checks.warnings]})
    return 0


def tune(args, out) -> int:
    from .tuning.tune import tune as run_tune

    config_path, data, overrides = overrides_and_source(args.inputs)
    config = Config.load(config_path) if config_path else Config()
    flags = {"data.target": args.target, "task.name": args.task, "model.name": args.model, "run.name": args.name,
             "run.runs_dir": args.runs_dir, "data.path": data, "tune.trials": args.trials, "tune.search": args.search,
             "tune.cv": args.cv, "tune.timeout": args.timeout, "tune.storage": args.storage, "tune.workers": args.workers,
             **_reading_overrides(args)}
    config = config.with_overrides({k: v for k, v in flags.items() if v is not None}).with_overrides(overrides)
    bus = out.progress()
    bus.subscribe("checks_done", lambda report, **_: _print_findings(out, report))
    result = run_tune(config=config, events=bus)
    columns = [c.split(".")[-1] for c in result.trials.columns]  # model.params.num_leaves → num_leaves
    out.table(f"Trials ({result.metric}, {result.direction})", columns,
              [[_cell(v) for v in row] for row in result.trials.itertuples(index=False)])
    out.say(f"[green]✓[/] best {result.metric} [bold]{result.best_value:.4f}[/]: "
            + escape(", ".join(f"{k}={_cell(v)}" for k, v in result.best_params.items())))
    out.say(f"  study {escape(str(result.run.directory))}; train the best: dojo train {escape(str(result.best_config))}")
    out.result({"study": result.run.name, "metric": result.metric, "direction": result.direction,
                "best_value": result.best_value, "best_params": result.best_params,
                "best_config": str(result.best_config), "trials": len(result.trials)})
    return 0


def _cell(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def _print_findings(out, report) -> None:
    out.say(f"[cyan]•[/] checks: {report.rows} rows × {report.columns} columns, target {escape(repr(report.target))} "
            f"({report.kind}); {len(report.warnings)} warning(s)")
    for finding in report.warnings:
        out.say(f"  [yellow]![/] {escape(finding.message)}")


def check(args, out) -> int:
    config_path, data, more = overrides_and_source(args.inputs)  # a data file, or a config as for train
    config = Config.load(config_path) if config_path else Config()
    overrides = {"data.target": args.target, "task.kind": args.kind, "data.path": data, **_reading_overrides(args)}
    if args.no_label_errors:
        overrides["data.label_error_check"] = False
    config = config.with_overrides({k: v for k, v in overrides.items() if v is not None}).with_overrides(more)
    report = api.check(None, config=config)
    out.say(f"[bold]{escape(report.source)}[/]: {report.rows} rows × {report.columns} columns"
            + (escape(f", target {report.target!r} ({report.kind})") if report.target else ""))
    if not report.target and config.data.path:  # the same guess `dojo app` pre-selects
        likely = api.suggest(config.data.path, config)
        if likely["target"]:
            out.say(escape(f"no --target given: likely {likely['target']!r} ({likely['task']} task); "
                           f"check it with --target {likely['target']}"))
    out.table("Columns", ["column", "dtype", "missing", "missing %", "unique", "notes"],
              [[r["column"], r["dtype"], r["missing"], r["missing_pct"], r["unique"], r["notes"]]
               for r in report.column_table])
    if report.class_counts:
        out.table("Classes", ["class", "rows"], [[k, v] for k, v in report.class_counts.items()])
    if report.label_issues:
        out.table("Suspected label errors (most suspicious first)", ["where", "given", "suggested", "p(given)"],
                  [[i["location"], i["given"], i["suggested"], i["given_label_probability"]]
                   for i in report.label_issues])
    colours = {"error": "red", "warning": "yellow", "info": "dim"}
    out.table("Findings", ["severity", "finding"],
              [[Text(f.severity, style=colours[f.severity]), f.message] for f in report.findings])
    if args.out:
        runs_module.write_json(Path(args.out), report.to_dict())
        out.say(f"saved {escape(args.out)}")
    out.result(report.to_dict())
    if report.errors:
        out.say(f"[bold red]{len(report.errors)} blocking problem(s)[/]: training would stop here.")
        return DataError.exit_code
    return 0


def validate(args, out) -> int:
    if args.explain:
        out.table("Settings", ["key", "type", "default", "help"], [list(row) for row in Config.describe()])
        out.result({"settings": [dict(zip(["key", "type", "default", "help"], row)) for row in Config.describe()]})
        return 0
    if not args.config:
        raise ConfigError("validate needs a config file (or --explain)")
    config = Config.load(args.config, args.overrides)
    out.say(f"[green]✓[/] {escape(args.config)} is valid")
    if not out.quiet:
        print(config.to_yaml())
    out.result({"valid": True, "config": config.to_dict()})
    return 0


def evaluate(args, out) -> int:
    data = args.data
    if data and (args.delimiter or args.encoding):
        data = _read_for_run(args, out, data)
    result = api.evaluate(args.run, data, cv=args.cv, runs_dir=_runs_dir(args), events=out.progress())
    if "cv" in result:
        rows = result["cv"]["table"]
        columns = [c for c in rows[0] if c != "rows"]
        out.table(f"{args.cv}-fold cross-validation", columns, [[row.get(c) for c in columns] for row in rows])
    else:
        out.table("Metrics", ["metric", "value"], [[k, v] for k, v in scalar(result["metrics"]).items()])
    for warning in result.get("warnings", []):
        out.say(f"[yellow]![/] {escape(warning)}")
    out.say(f"[green]✓[/] report: {escape(result['report'])}")
    out.result(result)
    return 0


def predict(args, out) -> int:
    from .serving.predictor import open_predictor, read_rows

    predictor = open_predictor(args.run, _runs_dir(args), backend=args.backend)
    frame = _read_for_run(args, out, args.data)
    if getattr(args, "future", None):  # the steps to forecast, after the history rows
        frame = _with_future(frame, _read_for_run(args, out, args.future))
    prediction = predictor.predict(read_rows(predictor, frame))
    for column, count in prediction.notes.get("unseen_categories", {}).items():
        out.say(f"[yellow]![/] column {escape(repr(column))}: {count} value(s) never seen in training, "
                "treated as missing")
    table = prediction.table if prediction.table is not None else \
        pd.concat([frame.reset_index(drop=True), prediction.to_frame()], axis=1)
    if getattr(args, "draw", None):
        from . import tasks

        drawn = tasks.get(predictor.task).draw_predictions(frame, prediction, Path(args.draw))
        out.say(f"[green]✓[/] {drawn} annotated image(s) written to {escape(args.draw)}")
    if args.out:
        _write_table(table, Path(args.out), _output_encoding(predictor))
        out.say(f"[green]✓[/] {len(table)} predictions written to {escape(args.out)}")
    elif not args.json:
        sys.stdout.write(table.to_csv(index=False))
    out.result({"rows": len(table), "out": args.out, "notes": prediction.notes,
                "predictions": None if args.out else table["prediction"].tolist()})
    return 0


def _with_future(history: pd.DataFrame, future: pd.DataFrame) -> pd.DataFrame:
    """History rows then the future rows, their file lines kept for error messages."""
    frame = pd.concat([history, future], ignore_index=True)
    frame.attrs = {key: value for key, value in history.attrs.items() if key != "lines"}
    return frame


def export(args, out) -> int:
    from .export.exporter import export as run_export

    data = args.data
    if data and (args.delimiter or args.encoding):
        data = _read_for_run(args, out, data)
    result = run_export(args.run, format=args.format, quantize=args.quantize, out=args.out, runs_dir=_runs_dir(args),
                        data=data, max_abs_diff=args.max_abs_diff, max_metric_drop=args.max_metric_drop,
                        force=args.force)
    parity = result["parity"]
    mark = "[yellow]![/] parity FAILED, exported anyway (--force)" if result["forced"] else "[green]✓[/] parity"
    if "summary" in result:  # a task's own format explains its own parity numbers
        out.say(f"{mark} {escape(result['summary'])}")
    else:
        out.say(f"{mark}: {parity['rows']} rows, max |Δp| {parity['max_abs_diff']:.2e}, agreement "
                f"{parity['agreement']:.4f}, {parity['metric']} {parity['original']:.4f} → {parity['exported']:.4f}")
    out.say(f"  export {escape(result['folder'])}")
    out.result(result)
    return 0


def chat(args, out) -> int:
    from . import tasks
    from .serving.predictor import open_predictor

    predictor = open_predictor(args.run, _runs_dir(args), backend=args.backend)
    converse = getattr(tasks.get(predictor.task), "converse", None)
    if converse is None:
        raise ConfigError(f"{args.run} is a {predictor.task} model; `dojo chat` talks to chat models (score rows "
                          f"with `dojo predict {args.run} --data FILE`)")
    answers = converse(predictor, system=args.system, max_tokens=args.max_tokens, temperature=args.temperature)
    out.result({"answers": answers})
    return 0


def serve(args, out) -> int:
    import os

    from .serving.log_stores import is_database_url
    from .serving.server import serve as run_server

    def _log_target(target):  # a folder is made absolute (workers may start elsewhere); a URL is kept as given
        return None if not target else target if is_database_url(target) else str(Path(target).resolve())

    options = {"max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue,
               "api_key": args.api_key or os.environ.get("DOJO_API_KEY") or None,
               "log_predictions": _log_target(args.log_predictions),
               "log_sample_rate": args.log_sample_rate, "log_mask_names": args.log_mask_names}
    if args.timeout:
        options["timeout_s"] = args.timeout
    if args.max_body_bytes:
        options["max_body_bytes"] = args.max_body_bytes
    if args.host not in ("127.0.0.1", "localhost", "::1") and not options["api_key"]:
        out.say(f"[yellow]![/] serving on {escape(args.host)} without --api-key: anyone who can reach this port "
                "can use the model")
    out.say(f"serving {escape(args.run)} on http://{escape(args.host)}:{args.port} (docs at /docs); Ctrl+C stops")
    run_server(args.run, runs_dir=_runs_dir(args), host=args.host, port=args.port, workers=args.workers,
               backend=args.backend, name=args.name, threads=args.threads, drain_timeout=args.drain_timeout,
               **options)
    return 0


def _output_encoding(predictor) -> str:
    """data.output_encoding of the run behind the model: from the run's own config, an export's manifest, or
    the config.yaml of the run an ONNX export came from. An export copied away from its run (or a run from
    before the setting) gets the default, which Excel opens."""
    from .export.runtime import ExportedModel

    if not isinstance(predictor.model, ExportedModel):
        return Config.from_dict(predictor.model.meta.get("config")).data.output_encoding
    manifest = predictor.model.manifest
    if "config" in manifest:  # the formats a task writes itself carry the run's config
        return Config.from_dict(manifest["config"]).data.output_encoding
    source = Path(manifest["source_run"]) / "config.yaml" if manifest.get("source_run") else None
    return (Config.load(source) if source and source.is_file() else Config()).data.output_encoding


# Unescaped, these end a line for str.splitlines() (and for our own JSONL reader): one record would become two.
# They can only occur inside JSON strings, where their escapes mean the same.
_LINE_BREAKS_ESCAPED = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}


def _write_table(table: pd.DataFrame, path: Path, encoding: str = "utf-8-sig") -> None:
    """`encoding` is for CSV/TSV only (what spreadsheets open); JSON Lines is always plain UTF-8, with Japanese
    written as itself rather than \\u escapes so that the file stays readable."""
    suffix = path.suffix.lower()
    temp = path.with_name(f".{path.name}.tmp")
    if suffix == ".parquet":
        table.to_parquet(temp, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        text = table.to_json(orient="records", lines=True, force_ascii=False)
        temp.write_text(text.translate(_LINE_BREAKS_ESCAPED), encoding="utf-8")
    else:
        table.to_csv(temp, index=False, sep="\t" if suffix == ".tsv" else ",", encoding=encoding)
    temp.replace(path)  # atomic: a crash never leaves half a predictions file


def _primary(task: str | None, kind: str | None) -> str:
    from . import tasks
    from .errors import DojoError

    try:
        return tasks.get(task).primary_metric(kind) if task and kind else ""
    except (DojoError, KeyError):  # a run of a task or kind this version does not know
        return ""


def runs(args, out) -> int:
    rows = runs_module.list_runs(_runs_dir(args))
    table = []
    for row in rows:
        test = row["metrics"].get("test", {})
        primary = _primary(row["task"], row["kind"])
        table.append([row["name"], row["status"], row["task"], row["kind"], row["learner"], row["started"],
                      f"{primary} {test[primary]:.4g}" if primary in test else ""])
    out.table(f"Runs in {_runs_dir(args)}", ["name", "status", "task", "kind", "learner", "started", "test"], table)
    if not rows:
        out.say("no runs yet: try `dojo train data.csv --target COLUMN`")
    out.result({"runs": rows})
    return 0


def ui(args, out) -> int:
    from .tracking.mlflow_tracker import default_uri

    # mlflow-skinny (the core dependency) has the server code but not the web front end.
    if not environment.extra_installed("ui"):
        raise ConfigError("the MLflow UI needs the full mlflow package: pip install 'modeldojo[ui]'")
    uri = args.tracking_uri or default_uri(_runs_dir(args))
    out.say(f"MLflow UI on http://127.0.0.1:{args.port} (tracking {escape(uri)}); Ctrl+C to stop")
    return subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                            "--host", "127.0.0.1", "--port", str(args.port)])


def doctor(args, out) -> int:
    info = environment.describe(full=True)
    hardware = info["hardware"]
    out.table("Hardware", ["", ""], [["CPU cores", hardware["cpu_cores"]], ["memory (GiB)", hardware["memory_gib"]],
                                     ["GPU", ", ".join(hardware["gpus"]) or "none"],
                                     ["system", f"{hardware['system']} {hardware['machine']}"]])
    out.table(f"Python {info['python']} packages", ["package", "version"], [[k, v] for k, v in info["packages"].items()])
    out.table("Extras", ["extra", "installed"], [[k, "yes" if v else "no"] for k, v in info["extras"].items()])
    out.table("Offline assets", ["package", "installed", "what"],
              [[k, "yes" if v["installed"] else "no", v["what"]] for k, v in info["offline_assets"].items()])
    out.result(info)
    return 0
