"""Typed, validated configuration: one dataclass group per concern.

Every field carries its help text and allowed range; a wrong value raises a ConfigError that
names the field, the value and what is allowed. Configs load from YAML, take `group.key=value`
overrides from the command line, and are saved with every run.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .config_fields import Group, describe, setting
from .config_forecast import ForecastConfig
from .errors import ConfigError


@dataclass
class DataConfig(Group):
    section = "data"
    path: str | None = setting(None, "Training data: CSV/TSV/JSONL/Parquet file, a folder of images per class "
                                     "(photos/cat/*.jpg), or a DataFrame in Python.")
    target: str | None = setting(None, "Name of the column to predict.")
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = setting("auto", "File format; auto = by file extension.")
    delimiter: str | None = setting(None, "Field delimiter for CSV-like files; null = sniffed from the file.")
    encoding: str = setting("auto", "Text encoding of CSV/TSV/JSONL files; auto = BOM, else UTF-8, else "
                                     "cp932/euc_jp, else a Western code page (see docs/data.md).")
    validation_path: str | None = setting(None, "Optional separate validation file (otherwise split from the data).")
    test_path: str | None = setting(None, "Optional separate test file (otherwise split from the data).")
    validation_fraction: float = setting(0.1, "Share of the non-test rows held out for early stopping.", minimum=0.0, maximum=0.5)
    test_fraction: float = setting(0.2, "Share of rows held out for the final test metrics.", minimum=0.0, maximum=0.5)
    group_column: str | None = setting(None, "Rows sharing this column's value stay in the same split / fold.")
    text_columns: list[str] = setting([], "Text task: the text column(s); empty = the free-text column found in the data.")
    image_column: str | None = setting(None, "Image task: the column of image paths (relative to the data file) or "
                                             "arrays; null = the one found in the data.")
    augment: Literal["none", "light", "strong"] = setting(
        "light", "Image task: training augmentation. light = random resized crop (70-100%), small colour jitter, "
                 "horizontal flip; strong = wider crops, RandAugment (2 ops) and random erasing. Detection: light = "
                 "flip, scale-crop (50-100% of the area) and colour jitter; strong = the same plus mosaic (half "
                 "of the batches).")
    horizontal_flip: bool = setting(True, "Image task: allow horizontal flips in augmentation (off for digits, text).")
    skip_bad_images: bool = setting(False, "Image task: leave out unreadable / missing image files (listed as "
                                           "warnings) instead of stopping before training.")
    image_cache_mb: int = setting(4096, "Image task: decoded images are kept in memory up to this size; beyond it "
                                        "they are decoded per batch.", minimum=0)
    label_separator: str = setting("|", "Multilabel: separator between labels in a target cell (\"billing|refund\"); "
                                        "predictions are written the same way.")
    drop_columns: list[str] = setting([], "Columns never used as features.")
    class_weights: Literal["auto", "balanced", "none"] = setting(
        "auto", "Classification: weight classes inversely to frequency; auto = balanced when imbalance ratio >= 3.")
    resample: Literal["none", "oversample", "undersample"] = setting(
        "none", "Classification: randomly over-sample minority / under-sample majority classes in the training split.")
    label_error_check: bool = setting(True, "Look for suspected label errors (cleanlab on out-of-fold probabilities).")
    check_sample_rows: int = setting(20000, "Row sample used by the slower checks (leakage, label errors).", minimum=100)
    normalize_text: bool = setting(True, "NFKC-normalise text cells of non-free-text columns before types are "
                                         "inferred (full-width digits and letters, half-width katakana) and read "
                                         "Japanese dates (2024年1月5日, 令和6年1月5日); `dojo check` lists what changed.")
    output_encoding: Literal["utf-8-sig", "utf-8"] = setting(
        "utf-8-sig", "CSV files dojo writes (predictions, trials): utf-8-sig adds the byte-order mark that Excel "
                     "needs to open UTF-8 (Japanese Windows shows mojibake without it); JSON is always plain UTF-8.")
    mask_pii: bool = setting(False, "Replace e-mail addresses, phone numbers, My Numbers, card numbers, IP addresses "
                                    "and URL credentials in text cells by <EMAIL>, <PHONE> … before training and "
                                    "prediction (`dojo check` reports the columns that hold them).")
    system_prompt: str | None = setting(None, "Chat: system turn added to conversations that have none, in "
                                              "training, evaluation, `dojo chat` and serving alike.")

    def validate(self) -> None:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ConfigError(
                f"data.validation_fraction + data.test_fraction = {self.validation_fraction + self.test_fraction:g}; "
                "must be below 0.9 so something is left to train on")


@dataclass
class TaskConfig(Group):
    section = "task"
    name: str = setting("auto", "Registered task name (tabular, …); auto = chosen from the data.")
    kind: Literal["auto", "regression", "binary", "multiclass", "multilabel", "generation",
                  "detection", "forecast"] = setting(
        "auto", "Prediction kind; auto = inferred from the target column (multilabel when its cells are lists, "
                "e.g. JSON arrays; set multilabel for delimited strings, see data.label_separator); generation = "
                "the chat task's answers; detection = boxes with classes; forecast = future values of time series.")


@dataclass
class ModelConfig(Group):
    section = "model"
    name: str = setting("auto", "Tabular: learner lightgbm, xgboost, catboost, random_forest, extra_trees, "
                                "decision_tree, hist_gradient_boosting, linear (auto = lightgbm). Neural: a Hugging "
                                "Face id or local folder (auto = the task's default).")
    params: dict[str, Any] = setting({}, "Extra keyword arguments passed to the learner (override dojo's defaults).")
    target_transform: Literal["auto", "none", "log"] = setting(
        "auto", "Regression: fit on log(1+y) and invert; auto = when the target is positive and right-skewed.")
    image_size: int = setting(0, "Image: input resolution (square); 0 = the backbone's own, lowered for small "
                                 "images to three times their median side, rounded up to 32 (at least 96). Detection: the letterbox "
                                 "side; 0 = the median longer image side rounded up to 32, between 160 and 640.",
                             minimum=0)
    max_length: int = setting(0, "Text: maximum tokens per example; 0 = the 95th percentile of the training "
                                 "texts' token lengths (reported), capped by the model.", minimum=0)


@dataclass
class TrainConfig(Group):
    section = "train"
    seed: int = setting(0, "Random seed for splits, sampling and learners.", minimum=0)
    max_rounds: int = setting(5000, "Boosted trees: upper bound on boosting rounds.", minimum=1)
    early_stopping_rounds: int = setting(200, "Boosted trees: stop after this many rounds without validation "
                                              "improvement; 0 = off.", minimum=0)
    refit_full: bool = setting(True, "After early stopping, refit on train+validation with the best round count "
                                     "scaled to the larger data.")
    threads: int = setting(0, "CPU threads for learners and torch's training loop; 0 = all cores.", minimum=0)
    # -- neural tasks (text, image, LLM): one shared training loop ----------------------
    epochs: int = setting(3, "Neural: passes over the training data.", minimum=1)
    max_steps: int = setting(0, "Neural: stop after this many optimizer steps; 0 = no limit.", minimum=0)
    time_limit: float = setting(0, "Neural: stop after this many seconds of training (checked after each step; the "
                                "weights then are evaluated and the best kept); 0 = no limit.", minimum=0)
    batch_size: int = setting(16, "Neural: examples per optimizer step (before gradient accumulation).", minimum=1)
    gradient_accumulation: int = setting(1, "Neural: micro-batches summed per optimizer step.", minimum=1)
    learning_rate: float = setting(5e-5, "Neural: peak learning rate.", minimum=0.0)
    optimizer: Literal["adamw", "sgd"] = setting("adamw", "Neural: optimizer (SGD uses momentum 0.9).")
    momentum: float = setting(0.9, "Neural: SGD momentum.", minimum=0.0, maximum=1.0)
    weight_decay: float = setting(0.01, "Neural: decoupled weight decay (L2) on weights, not biases/norms.", minimum=0.0)
    l1: float = setting(0.0, "Neural: L1 penalty coefficient added to the loss.", minimum=0.0)
    dropout: float | None = setting(None, "Neural: dropout probability set on the model; null = the model's own.",
                                    minimum=0.0, maximum=0.9)
    attention_dropout: float | None = setting(
        0.0, "Neural: dropout on attention weights; 0 by default (on CPU it cost ~20% of a MiniLM training step "
             "and rules out fused attention; accuracy unchanged in bench/text_train.py); null = the model's own.",
        minimum=0.0, maximum=0.9)
    schedule: Literal["constant", "linear", "cosine"] = setting("linear", "Neural: learning-rate schedule after warmup.")
    warmup: float = setting(0.06, "Neural: warmup length: a fraction of all steps if < 1, else a step count.",
                            minimum=0.0)
    max_grad_norm: float = setting(1.0, "Neural: clip gradients to this norm; 0 = off.", minimum=0.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto", "Neural: autocast precision; auto = bf16 where the hardware runs it natively (recent GPUs; CPUs "
                "with AVX512-BF16/AMX), fp16 with a loss scaler on older GPUs, else fp32.")
    activation_checkpointing: bool = setting(
        False, "Neural (transformers models): recompute each layer's activations in backward instead of keeping "
               "them; lowers the peak memory at the cost of a second forward pass (see docs/benchmarks.md).")
    eval_every: int = setting(0, "Neural: evaluate every N optimizer steps; 0 = at the end of each epoch.", minimum=0)
    patience: int = setting(0, "Neural: stop after N evaluations without improvement; 0 = never stop early.",
                            minimum=0)
    monitor: str = setting("auto", "Neural: validation metric for early stopping and the best checkpoint; auto = "
                                   "the task's main metric.")
    checkpoint_every: int = setting(0, "Neural: write a checkpoint every N optimizer steps; 0 = each epoch.",
                                    minimum=0)
    keep_checkpoints: int = setting(2, "Neural: how many recent checkpoints to keep (the best is always kept).",
                                    minimum=1)
    resume: bool = setting(True, "Neural: continue from the run folder's last checkpoint when one exists.")
    distributed: Literal["auto", "ddp", "fsdp"] = setting(
        "auto", "Neural, launched with several processes (torchrun / accelerate): ddp = every process holds the "
                "whole model (DistributedDataParallel); fsdp = parameters, gradients and optimizer state sharded "
                "across the processes (PyTorch FSDP2, one unit per transformer layer); auto = ddp. One process: "
                "ignored.")

@dataclass
class FinetuneConfig(Group):
    section = "finetune"
    strategy: str = setting("auto", "Which weights train: full, head (new head only), freeze (embeddings + first "
                                    "N layers frozen), lora (PEFT LoRA adapters), reft (chat: LoReFT interventions "
                                    "on hidden states, see finetune.reft_*); auto = the task's default (lora for "
                                    "chat, full otherwise).")
    train_token_embeddings: bool = setting(
        False, "full/freeze: also train the token-embedding table. Off by default: it is often half of a small "
               "encoder's weights (11.7M of MiniLM's 22.7M), each step touches only the rows of its tokens, and "
               "training it cost ~8% of a CPU step with no accuracy gain in bench/text_train.py.")
    freeze_layers: int = setting(0, "freeze: how many of the first transformer layers to freeze.", minimum=0)
    lora_rank: int = setting(8, "lora: adapter rank r.", minimum=1)
    lora_alpha: int = setting(16, "lora: scaling alpha.", minimum=1)
    lora_dropout: float = setting(0.05, "lora: dropout on the adapter input.", minimum=0.0, maximum=0.9)
    lora_targets: list[str] = setting([], "lora: module names to adapt; empty = all linear layers but the head.")
    reft_layers: list[int] = setting([], "reft: decoder layers to intervene on (negative counts from the end); "
                                         "empty = all.")
    reft_first_positions: int = setting(4, "reft: edit the prompt's first k tokens.", minimum=0)
    reft_last_positions: int = setting(4, "reft: edit the prompt's last k tokens.", minimum=0)
    reft_rank: int = setting(4, "reft: rank of each LoReFT intervention.", minimum=1)
    reft_share_weights: bool = setting(False, "reft: one intervention shared by every chosen layer (else one each).")


@dataclass
class EvaluateConfig(Group):
    section = "evaluate"
    worst_examples: int = setting(20, "How many worst predictions the error analysis lists.", minimum=0)
    report: bool = setting(True, "Write report.html with plots and MODEL_CARD.md.")
    max_new_tokens: int = setting(128, "Chat: most tokens generated per answer in evaluation and `dojo predict`.",
                                  minimum=1)
    baselines: bool = setting(True, "Chat: compare the fine-tuned model on the test questions with the base model "
                                    "prompted, few-shot and retrieval-augmented (the report's side-by-side table).")
    baseline_examples: int = setting(3, "Chat: training pairs in the few-shot and retrieval prompts.", minimum=1)
    confidence_threshold: float = setting(0.25, "Detection: boxes scoring at least this are predicted (`dojo "
                                          "predict`, serving) and count in precision / recall; mAP uses every box.",
                                          minimum=0.0, maximum=1.0)
    nms_iou: float = setting(0.6, "Detection: boxes of one class overlapping a better one by more than this IoU "
                             "are dropped (non-maximum suppression).", minimum=0.0, maximum=1.0)
    baseline_questions: int = setting(0, "Chat: test questions the side-by-side comparison uses; 0 = all.",
                                      minimum=0)


@dataclass
class TuneConfig(Group):
    section = "tune"
    space: dict[str, Any] = setting({}, "Search space: {group.key: {uniform|loguniform: [low, high]} | {int: [low, "
                                        "high]} | {choice: [values]}}; model.params.<arg> addresses learner "
                                        "arguments; empty = the task's default space.")
    trials: int = setting(20, "Trials to run (grid search: at most the grid's size).", minimum=1)
    search: Literal["grid", "random", "bayes"] = setting("bayes", "Sampler: grid, random, or bayes (Optuna TPE).")
    cv: int = setting(0, "Score each trial by the mean over K folds; 0 = on the validation split.", minimum=0)
    timeout: int = setting(0, "Stop starting new trials after this many seconds; 0 = no limit.", minimum=0)
    metric: str = setting("auto", "Metric to optimise; auto = the task's main metric for the kind.")
    direction: Literal["auto", "maximize", "minimize"] = setting("auto", "auto = from the metric.")
    storage: str | None = setting(None, "Optuna storage URL; null = sqlite in the study's run folder (resumable). "
                                        "postgresql://user@host/db lets several machines share one study.")
    pruning: Literal["none", "quartile", "median", "halving"] = setting(
        "quartile", "Stop unpromising trials early from the validation metric reported while they train (neural "
                    "evaluations, booster rounds): below the bottom quarter / the median of earlier trials at the "
                    "same step, or successive halving.")
    workers: int = setting(1, "Processes running trials at once against the study's storage (this machine).",
                           minimum=1)
    heartbeat: int = setting(30, "Seconds between a running trial's heartbeats; a trial silent for 2x this is "
                                 "marked failed (its worker died) and retried.", minimum=1)
    retries: int = setting(2, "Times a dead worker's trial is retried with the same parameters.", minimum=0)


@dataclass
class TrackingConfig(Group):
    section = "tracking"
    enabled: bool = setting(True, "Record the run in MLflow.")
    uri: str | None = setting(None, "MLflow tracking URI; null = sqlite:///<runs_dir>/mlflow.db (embedded).")
    experiment: str = setting("modeldojo", "MLflow experiment name.")


@dataclass
class RunConfig(Group):
    section = "run"
    name: str | None = setting(None, "Run folder name under runs_dir; null = <task>-<timestamp>.")
    runs_dir: str = setting("runs", "Folder that holds one sub-folder per run.")
    overwrite: bool = setting(False, "Replace an existing run folder of the same name.")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def groups(cls) -> dict[str, type[Group]]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> "Config":
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config must be a mapping of groups, got {type(raw).__name__}")
        groups = cls.groups()
        built = {}
        for section, values in raw.items():
            if section not in groups:
                raise ConfigError(_unknown("config group", section, groups))
            if values is None:
                values = {}
            if not isinstance(values, dict):
                raise ConfigError(f"{section}: expected a mapping of settings, got {values!r}")
            allowed = {f.name for f in dataclasses.fields(groups[section])}
            for key in values:
                if key not in allowed:
                    raise ConfigError(_unknown(f"setting in {section}", f"{section}.{key}", [f"{section}.{a}" for a in allowed]))
            built[section] = groups[section](**values)
        return cls(**built)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
        config = cls.from_dict(raw)
        return config.with_overrides(overrides or [])

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> "Config":
        """Apply `group.key=value` strings (values parsed as YAML) or a {"group.key": value} dict."""
        if isinstance(overrides, dict):
            pairs = list(overrides.items())
        else:
            pairs = []
            for item in overrides:
                if "=" not in item:
                    raise ConfigError(f"override {item!r} must look like group.key=value (e.g. train.seed=3)")
                key, text = item.split("=", 1)
                try:
                    value = yaml.safe_load(text) if text != "" else None
                except yaml.YAMLError:
                    value = text
                pairs.append((key.strip(), value))
        raw = self.to_dict()
        for key, value in pairs:
            if key.count(".") != 1:
                raise ConfigError(f"override key {key!r} must be group.key (e.g. train.seed)")
            section, name = key.split(".")
            if section not in raw:
                raise ConfigError(_unknown("config group", section, raw))
            raw[section][name] = value
        return type(self).from_dict(raw)

    def unchanged(self, values: dict[str, Any]) -> dict[str, Any]:
        """The {"group.key": value} entries whose setting still holds the project-wide default (a task's own
        defaults apply there; whatever the user set stays)."""
        project, current = type(self)().to_dict(), self.to_dict()
        return {key: value for key, value in values.items()
                if current[key.split(".")[0]][key.split(".")[1]] == project[key.split(".")[0]][key.split(".")[1]]}

    # -- output -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(key, type, default, help) for every setting — used by docs and `dojo validate --explain`."""
        rows = []
        for section, group in cls.groups().items():
            hints = typing.get_type_hints(group)
            for spec in dataclasses.fields(group):
                default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
                rows.append((f"{section}.{spec.name}", describe(hints[spec.name]), repr(default), spec.metadata["help"]))
        return rows


def _unknown(what: str, name: str, allowed) -> str:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}; allowed: {', '.join(allowed)}.{hint}"
