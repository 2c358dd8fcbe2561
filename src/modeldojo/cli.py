"""The `dojo` command: parsing and printing only; all work happens in api.py.

Exit codes: 0 ok · 1 internal error · 2 bad command line or config · 3 bad data ·
4 training failed · 5 run/model not found · 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text
from rich.table import Table

from . import __version__, events as ev
from .errors import ConfigError, DojoError

console = Console(stderr=True, highlight=False)  # human output on stderr; stdout stays clean for --json / data
EXIT_CODES = "exit codes: 0 ok, 1 internal error, 2 bad command line/config, 3 bad data, 4 training failed, " \
             "5 run or model not found, 6 export parity failed, 7 monitor alert (drift), 8 stopped on request (SIGTERM; --resume continues), 130 interrupted"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    common.add_argument("--json", action="store_true", help="print a JSON result on stdout (for scripts)")
    common.add_argument("--runs-dir", default=None, help="folder holding run folders (default: runs)")
    series = argparse.ArgumentParser(add_help=False)
    timing = series.add_argument_group("time series (forecasting)")
    timing.add_argument("--time", metavar="COLUMN", help="the timestamp column: forecast the target's future values")
    timing.add_argument("--id", nargs="+", metavar="COLUMN", help="column(s) naming each series (store product)")
    timing.add_argument("--horizon", type=int, metavar="H", help="steps to forecast (default: by frequency)")
    reading = argparse.ArgumentParser(add_help=False)
    reading.add_argument("--delimiter", help="CSV field delimiter (default: sniffed)")
    reading.add_argument("--encoding", help="text encoding of the data file (default: auto-detected: BOM, "
                         "UTF-8, cp932/euc_jp, cp1252; predict/evaluate prefer the run's)")

    parser = argparse.ArgumentParser(prog="dojo", description="modeldojo: train, check, evaluate and use models "
                                     "on your own data.", epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"modeldojo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, example: str, parents=()):
        return commands.add_parser(name, help=help, description=help, parents=[common, *parents],
                                   epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    train = command("train", "Train, evaluate and save a model (data checks run first).",
                    "dojo train houses.csv --target Sale_Price\n  dojo train examples/ames.yaml train.seed=3\n"
                    "  dojo train reviews.csv --target score --strategy lora --epochs 2\n"
                    "  dojo train photos/ --epochs 5          # a folder per class: photos/cat/*.jpg …\n"
                    "  dojo train sales.csv --target y --time ds --id store --horizon 28   # forecasting",
                    [reading, series])
    train.add_argument("inputs", nargs="*", metavar="DATA|CONFIG [key=value ...]",
                       help="a data file or a YAML config, then optional overrides like train.seed=3")
    train.add_argument("--target", help="column to predict")
    train.add_argument("--task", help="task name (default: chosen from the data)")
    train.add_argument("--kind", choices=["regression", "binary", "multiclass", "multilabel"], help="force the prediction kind")
    train.add_argument("--model", help="tabular learner: lightgbm (default), xgboost, catboost, random_forest, "
                                       "extra_trees, decision_tree, hist_gradient_boosting, linear; text/image: a "
                                       "Hugging Face id or folder (image also efficientnet-lite0, the default)")
    train.add_argument("--name", help="run name (default: <task>-<timestamp>)")
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument("--test-size", type=float, help="share of rows held out for testing (default 0.2)")
    train.add_argument("--validation-data", help="separate validation file")
    train.add_argument("--test-data", help="separate test file")
    train.add_argument("--drop", action="append", metavar="COLUMN", help="never use this column (repeatable)")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite file in the runs folder)")
    train.add_argument("--no-tracking", action="store_true", help="do not record the run in MLflow")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    neural = train.add_argument_group("neural tasks (text, image, LLM)")
    neural.add_argument("--strategy", help="fine-tuning strategy: full, head, freeze, lora")
    neural.add_argument("--epochs", type=int, help="passes over the training data")
    neural.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    neural.add_argument("--lr", type=float, help="peak learning rate")
    neural.add_argument("--batch-size", type=int, help="examples per micro-batch")
    neural.add_argument("--max-length", type=int, help="maximum tokens per text (default: from the data)")
    neural.add_argument("--image-size", type=int, help="image input size in pixels (default: from the data)")
    neural.add_argument("--augment", choices=["none", "light", "strong"], help="image augmentation (default light)")
    neural.add_argument("--resume", action="store_true", help="continue the named run from its last checkpoint "
                        "(also automatic when the run folder has one; pass --name)")

    check = command("check", "Data-quality report before training: missing values, duplicates, ID-like and "
                    "constant columns, class balance, leakage, suspected label errors.",
                    "dojo check houses.csv --target Sale_Price --out checks.json\n"
                    "  dojo check examples/digits.yaml             # the data a config trains on\n"
                    "  dojo check sales.csv --target y --time ds --id store   # series: gaps, duplicates, frequency",
                    [reading, series])
    check.add_argument("inputs", nargs="+", metavar="DATA|CONFIG [key=value ...]",
                       help="a data file or folder, or a YAML config (its data settings), then optional overrides "
                            "like data.target=y")
    check.add_argument("--target", help="column to predict")
    check.add_argument("--kind", choices=["regression", "binary", "multiclass", "multilabel"], help="force the prediction kind")
    check.add_argument("--out", help="also save the report as JSON here")
    check.add_argument("--no-label-errors", action="store_true", help="skip the label-error search (faster)")

    validate = command("validate", "Check a YAML config without running anything.",
                       "dojo validate examples/ames.yaml train.seed=3")
    validate.add_argument("config", nargs="?", help="YAML config file")
    validate.add_argument("overrides", nargs="*", help="key=value overrides")
    validate.add_argument("--explain", action="store_true", help="list every setting with its type, default and help")

    evaluate = command("evaluate", "Evaluate a run on its test split, on new labelled data, or by k-fold CV; "
                       "writes report.html and metrics.json under <run>/evaluation/.",
                       "dojo evaluate ames --data holdout.csv\n  dojo evaluate ames --cv 5", [reading])
    evaluate.add_argument("run", help="run name or folder")
    evaluate.add_argument("--data", help="labelled data to evaluate on (default: the run's own test split)")
    evaluate.add_argument("--cv", type=int, metavar="K", help="k-fold cross-validation with the run's config")

    predict = command("predict", "Predict a batch file with a run or an export folder — the same runtime as "
                      "`dojo serve` (a run's ONNX export when it has one, else its own model).",
                      "dojo predict ames --data new_houses.csv --out predictions.csv\n"
                      "  dojo predict runs/reviews/export/onnx-int8 --data new_reviews.csv --out scored.jsonl\n"
                      "  dojo predict shelves --data photos/ --out boxes.jsonl --draw annotated/\n"
                      "  dojo predict sales --data history.csv --future prices.csv --out forecast.csv",
                      [reading])
    predict.add_argument("run", help="run name, run folder, model folder or export folder")
    predict.add_argument("--backend", default="auto", choices=["auto", "onnx", "native"],
                         help="auto (default): the run's ONNX export when it has one, else its own model; "
                              "onnx: the export only; native: the run's own model")
    predict.add_argument("--data", required=True, help="CSV/TSV/JSONL/Parquet rows to predict, or a folder of images")
    predict.add_argument("--out", help="output file (.csv, .jsonl or .parquet); default: CSV on stdout")
    predict.add_argument("--future", metavar="FILE", help="forecasting: rows of the steps to forecast with their "
                         "known covariates (prices, holidays), appended to --data")
    predict.add_argument("--draw", metavar="FOLDER", help="detection: also write each image with its predicted boxes "
                                                          "drawn into FOLDER")

    export = command("export", "Export a run as a self-contained folder (ONNX model, preprocessing, manifest.json; "
                     "a chat model: merged weights or GGUF), refused unless it matches the original on the run's "
                     "validation rows (parity check).",
                     "dojo export reviews --format onnx\n  dojo export reviews --quantize int8 --out deploy/reviews-int8"
                     "\n  dojo export faq-bot                     # chat: LoRA merged into safetensors"
                     "\n  dojo export faq-bot --format gguf --quantize q8_0", [reading])
    export.add_argument("run", help="run name or folder")
    export.add_argument("--format", choices=["onnx", "merged", "gguf"],
                        help="export format (default: the task's first: onnx; merged for chat)")
    export.add_argument("--quantize", choices=["int8", "fp16", "f16", "q8_0", "f32"],
                        help="onnx: int8 weights (CPU) or fp16 (GPU, edge), default fp32, neural tasks only; gguf: "
                             "f16 (default), q8_0 or f32")
    export.add_argument("--out", help="export folder (default: <run>/export/<format>[-int8|-fp16])")
    export.add_argument("--data", help="labelled rows for the parity check (default: the run's validation rows)")
    export.add_argument("--max-abs-diff", type=float, help="largest probability difference allowed "
                                                           "(default 1e-4 fp32, 0.15 int8, 0.01 fp16)")
    export.add_argument("--max-metric-drop", type=float, help="largest main-metric drop allowed "
                                                              "(default 0.001 fp32, 0.005 int8, 0.002 fp16)")
    export.add_argument("--force", action="store_true", help="export even when parity fails (recorded in the "
                                                             "manifest)")

    tune = command("tune", "Hyperparameter search (Optuna): trials scored on the validation split or by k-fold CV; "
                   "writes trials.csv and best.yaml (train it with `dojo train <study>/best.yaml`).",
                   "dojo tune houses.csv --target Sale_Price --trials 30\n"
                   "  dojo tune examples/ames.yaml --search random --cv 5 --name ames-study --workers 2\n"
                   "  dojo tune reviews.csv --target score --trials 8 tune.space='{train.learning_rate: "
                   "{loguniform: [1.0e-5, 3.0e-4]}}'", [reading])
    tune.add_argument("inputs", nargs="*", metavar="DATA|CONFIG [key=value ...]",
                      help="a data file or a YAML config, then optional overrides like tune.trials=50")
    tune.add_argument("--target", help="column to predict")
    tune.add_argument("--task", help="task name (default: chosen from the data)")
    tune.add_argument("--model", help="learner or pretrained model, as for train")
    tune.add_argument("--name", help="study name (its folder under --runs-dir; the same name resumes it)")
    tune.add_argument("--trials", type=int, help="number of trials (default 20)")
    tune.add_argument("--search", choices=["grid", "random", "bayes"], help="sampler (default bayes = TPE)")
    tune.add_argument("--cv", type=int, metavar="K", help="score each trial by K-fold cross-validation")
    tune.add_argument("--timeout", type=int, metavar="S", help="stop starting trials after S seconds")
    tune.add_argument("--storage", help="Optuna storage URL (default: sqlite in the study folder); every machine "
                                        "running the same --name against one postgresql://… URL joins the study")
    tune.add_argument("--workers", type=int, metavar="W", help="W processes run trials in parallel (default 1)")

    serve = command("serve", "Serve a run or an export folder over HTTP: POST /predict, the KServe v2 routes "
                    "(/v2/health/live, /v2/health/ready, /v2/models/NAME/infer), GET /metrics, docs at /docs. "
                    "Requests are batched dynamically; SIGTERM drains in-flight requests before exiting.",
                    "dojo serve reviews --port 8000\n  dojo serve runs/reviews/export/onnx-int8 --workers 2 "
                    "--host 0.0.0.0 --api-key \"$TOKEN\"\n  curl -X POST localhost:8000/predict -H 'content-type: "
                    "application/json' -d '{\"inputs\": [\"Great coffee\"]}'")
    serve.add_argument("run", help="run name or folder (its ONNX export when it has one) or an export folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine "
                                                           "only; 0.0.0.0 to accept other machines)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes, each with the model and its own queue")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every route but liveness "
                                         "(default: $DOJO_API_KEY if set)")
    serve.add_argument("--backend", default="auto", choices=["auto", "onnx", "native"],
                       help="onnx: ONNX Runtime on the run's export; native: the run's PyTorch / booster model; "
                            "auto (default): the export when there is one")
    serve.add_argument("--name", help="model name in the /v2 routes (default: the run or folder name)")
    serve.add_argument("--log-predictions", metavar="DIR|URL", help="append every request (inputs and outputs, "
                       "personal data masked), its answer and latency to JSON Lines files in DIR, or to a database "
                       "table at URL (postgresql://user@host/db; read by `dojo monitor RUN --logs DIR|URL`)")
    serve.add_argument("--log-sample-rate", type=float, default=1.0, help="share of requests logged (default 1)")
    serve.add_argument("--log-mask-names", action="store_true", help="also mask person names in the log (needs an "
                       "installed spaCy model such as ja_ginza; ~15 ms per text cell, on the writer thread)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="rows per model call (default 32)")
    serve.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait for a batch to fill (default 2)")
    serve.add_argument("--max-queue", type=int, default=256, help="requests waiting per worker before 429 "
                                                                 "(default 256)")
    serve.add_argument("--timeout", type=float, help="seconds to answer a request before 504 (default 10; chat "
                                                     "models 120)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body, else 413 (default 1 MiB, "
                                                          "16 MiB for image models)")
    serve.add_argument("--drain-timeout", type=float, default=30.0, help="seconds in-flight requests get after "
                                                                          "SIGTERM (default 30)")
    serve.add_argument("--threads", type=int, default=0, help="inference threads per worker (default: cores ÷ "
                                                               "workers)")

    chat = command("chat", "Talk to a chat model in the terminal: answers stream as they are generated, with the "
                   "run's own chat template and system prompt (as `dojo serve` answers /v1/chat/completions). "
                   "/reset starts a new conversation; /exit or Ctrl+D quits.",
                   "dojo chat faq-bot\n  dojo chat faq-bot --system \"You answer for the permits office.\" "
                   "--max-tokens 200\n  dojo chat runs/faq-bot/export/merged")
    chat.add_argument("run", help="chat run name or folder, or an export folder (merged or GGUF)")
    chat.add_argument("--system", help="system prompt (default: the run's data.system_prompt, if any)")
    chat.add_argument("--max-tokens", type=int, help="longest answer in tokens (default: evaluate.max_new_tokens)")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default) answers greedily; higher "
                                                                     "samples more freely")
    chat.add_argument("--backend", default="auto", choices=["auto", "native"], help="native: the run's own model")

    command("runs", "List runs with their status and main test metric.", "dojo runs")
    ui = command("ui", "Open the MLflow dashboard for the runs (needs `pip install modeldojo[ui]`).",
                 "dojo ui --port 5000")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite file in the runs folder)")
    command("doctor", "Show versions, hardware, installed extras and offline assets.", "dojo doctor")
    from .app_command import add_parser as add_app_parser
    from .maintenance_commands import add_parsers

    add_parsers(command, reading)
    add_app_parser(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may also come after the flags: dojo train data.csv --target y train.seed=3
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    if extra != overrides or (overrides and args.command not in ("train", "tune", "check", "validate")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "id", None):  # --id takes one or more columns: overrides typed after it are overrides
        overrides += [item for item in args.id if "=" in item]
        args.id = [item for item in args.id if "=" not in item]
    if overrides:
        getattr(args, "inputs", getattr(args, "overrides", None)).extend(overrides)
    if not args.command:
        parser.print_help()
        return 2
    output = _Output(args)
    try:
        _refuse_config_as_data(args)
        from . import commands
        result = getattr(commands, args.command)(args, output)
        return result or 0
    except DojoError as error:
        _fail(args, str(error), error.exit_code)
        return error.exit_code
    except KeyboardInterrupt:
        _fail(args, "interrupted", 130)
        return 130
    except Exception as error:  # a bug: show the traceback so it can be reported
        traceback.print_exc()
        _fail(args, f"internal error: {type(error).__name__}: {error}", 1)
        return 1
    finally:
        output.close()


def _refuse_config_as_data(args) -> None:
    """evaluate / predict / export score a run with its own config: their --data is rows, never a YAML config."""
    data = getattr(args, "data", None) if args.command in ("evaluate", "predict", "export") else None
    if isinstance(data, str) and data.lower().endswith((".yaml", ".yml")):
        raise ConfigError(f"--data {data}: expected a data file (CSV, TSV, JSONL, Parquet or an image folder); "
                          f"`dojo {args.command}` uses the run's own config (a YAML config goes to train, tune or "
                          "check)")


def _fail(args, message: str, code: int) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "exit_code": code}))
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


class _Output:
    """Printing helpers honouring --quiet and --json."""

    def __init__(self, args) -> None:
        self.args = args
        self.quiet = args.quiet or args.json

    def say(self, text: str) -> None:
        if not self.quiet:
            console.print(text, soft_wrap=True)

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.quiet:
            return
        console.print(f"[bold]{title}[/]")  # a title above, not in, the table: narrow tables would wrap it
        table = Table()
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*[v if isinstance(v, Text) else escape(_format(v)) for v in row])
        console.print(table)

    def result(self, data: dict[str, Any]) -> None:
        if self.args.json:
            print(json.dumps(data, indent=2, default=str))

    def progress(self) -> ev.EventBus:
        bus = ev.EventBus()
        if not self.quiet:
            self.view = _ProgressView()
            bus.subscribe_all(self.view)
        return bus

    def close(self) -> None:
        if getattr(self, "view", None) is not None:
            self.view._close()


class _ProgressView:
    """Stage lines plus live rich progress bars (boosting rounds, CV folds), driven by events."""

    def __init__(self) -> None:
        self.bars: Progress | None = None
        self.ids: dict[str, int] = {}

    def on_stage(self, name: str, detail: str = "", **_: Any) -> None:
        self._close()  # a new stage ends the previous bars (early stopping ends before `total`)
        console.print(f"[cyan]•[/] {name}: {escape(detail)}", soft_wrap=True)

    def on_progress(self, name: str, completed: int, total: int, info: str = "", **_: Any) -> None:
        if self.bars is None:
            self.bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), console=console, transient=True)
            self.bars.start()
        if name not in self.ids:
            self.ids[name] = self.bars.add_task(name, total=total, info="")
        # info: e.g. "epoch 1/3 · loss 0.41 · 31.2 examples/s · best val loss 0.38"
        self.bars.update(self.ids[name], completed=completed, total=total, info=escape(info))

    def on_run_completed(self, **_: Any) -> None:
        self._close()

    def on_run_failed(self, **_: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars, self.ids = None, {}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return "" if value is None else str(value)


def overrides_and_source(inputs: list[str]) -> tuple[str | None, str | None, list[str]]:
    """Split `train` / `tune` / `check` positionals into (config file, data file, key=value overrides)."""
    config = data = None
    overrides = []
    for item in inputs:
        if "=" in item and not Path(item).exists():
            overrides.append(item)
        elif item.lower().endswith((".yaml", ".yml")):
            if config:
                raise ConfigError(f"two config files given: {config} and {item}")
            config = item
        elif data is None:
            data = item
        else:
            raise ConfigError(f"unexpected argument {item!r}; overrides look like group.key=value")
    return config, data, overrides


if __name__ == "__main__":
    sys.exit(main())
