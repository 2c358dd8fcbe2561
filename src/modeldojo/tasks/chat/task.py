"""The chat task: instruction-tune a causal LM on question/answer conversations.

Its rows are not "features → label": any chat layout (messages, ShareGPT, Alpaca, prompt/completion) is read
into two columns, `messages` (the conversation up to its last answer, as JSON) and `answer` (that answer, the
target). Everything shared — reading, splits, runs, reports, serving, export — then works through the Task
interface: this class owns the checks, the split's strata (a `category` column when there is one), the metrics
(ROUGE-L, exact match, stop rate, perplexity), the report's side-by-side comparison and the exports.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError
from ...events import STAGE, EventBus
from ..base import TASKS, Prediction, Task, neural_search_space
from . import conversations
from .codec import ChatCodec

PROMPT, ANSWER = "messages", "answer"
STATE_FILE, TOKENIZER_FOLDER, TEMPLATE_FILE = "chat.json", "tokenizer", "chat_template.jinja"
WEIGHT_FOLDERS = {"lora": "adapter", "reft": "reft"}  # any other strategy: the whole model in "weights"
STRATA = ("category", "topic", "intent")  # a column of these names stratifies the held-out split
PREDICT_BATCH = 8


def resolve_model(name: str) -> str:
    from .base_model import default_model

    return default_model() if name in ("auto", "", None) else name


def require_qlora() -> None:
    """qlora = LoRA on a 4-bit (NF4) base: bitsandbytes' kernels need a CUDA GPU."""
    import importlib.util

    import torch

    missing = "no CUDA GPU" if not torch.cuda.is_available() else \
        "no bitsandbytes" if importlib.util.find_spec("bitsandbytes") is None else None
    if missing:
        raise ConfigError(f"finetune.strategy qlora needs a CUDA GPU and `pip install bitsandbytes` (4-bit base "
                          f"weights); this machine has {missing}. Use lora: the same adapters on a full-precision "
                          "base")


def load_base(name: str, device: str = "cpu", *, four_bit: bool = False):
    """(model, tokenizer) in fp32 from a folder or hub id (the packaged SmolLM2 for "auto"); `four_bit`: NF4
    weights through bitsandbytes for qlora (CUDA only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    path = resolve_model(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if four_bit:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quantization, device_map={"": 0})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and (not tokenizer.model_max_length or tokenizer.model_max_length > limit):
        tokenizer.model_max_length = limit  # SmolLM2's GGUF tokenizer says 1e30
    return model, tokenizer


def fingerprint(model) -> str:
    """A cheap identity of a base model's weights: an adapter trained on one base is refused on another."""
    import hashlib

    import torch

    digest = hashlib.sha256(json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        digest.update(embeddings.detach().flatten()[:65536].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@TASKS.register("chat")
class ChatTask(Task):
    name = "chat"
    neural = True
    codec = ChatCodec
    supported_kinds = ("generation",)
    row_label_checks = False
    default_strategy = "lora"
    default_target = ANSWER
    export_formats = ("merged", "gguf")

    def __init__(self, config, kind, target) -> None:
        super().__init__(config, kind, target)
        self.model = self.tokenizer = self.template = self.adapter = None
        self.base_name, self.base_fingerprint, self.strategy = "auto", "", "lora"
        self.train_pairs: tuple[list[list[dict]], list[str]] = ([], [])  # for the report's few-shot / RAG
        self.directory: Path | None = None  # the model folder, once loaded

    # -- the data ------------------------------------------------------------------------
    @classmethod
    def detect(cls, frame, target):
        try:
            return 0.99 if conversations.detect_format(frame) else 0.0
        except Exception:  # noqa: BLE001 - detection must never fail a table of another shape
            return 0.0

    @classmethod
    def normalize(cls, frame: pd.DataFrame, config) -> pd.DataFrame:
        if frame.attrs.get("chat_rows"):
            return frame
        prompts, answers, layout = conversations.to_prompts(frame, config.data.system_prompt)
        rows = frame.drop(columns=conversations.layout_columns(frame, layout)).reset_index(drop=True)
        rows.insert(0, PROMPT, [json.dumps(prompt, ensure_ascii=False) for prompt in prompts])
        rows.insert(1, ANSWER, pd.Series(answers, dtype=object))
        rows.attrs = {**frame.attrs, "chat_rows": True, "chat_layout": layout}
        return rows

    @classmethod
    def check_data(cls, frame: pd.DataFrame, config, label_errors: bool):
        from ...data.checks import CheckReport
        from ...data.readers import source_name

        report = CheckReport(source_name(frame), len(frame), frame.shape[1], config.data.target, "generation")
        if frame.attrs.get("encoding_warning"):
            report.add("encoding", "warning", frame.attrs["encoding_warning"], encoding=frame.attrs.get("encoding"))
        if len(frame) == 0:
            report.add("empty", "error", f"{report.source}: no data rows")
            return report
        if config.data.target != ANSWER:
            report.add("target", "error", f"the chat task predicts the conversation's last answer; leave "
                       f"data.target unset (got {config.data.target!r})")
            return report
        answers = frame[ANSWER].tolist()
        unanswered = [row for row, answer in enumerate(answers) if answer is None]
        if unanswered:
            report.add("no_answer", "error", f"{report.source}: {len(unanswered)} conversations have no answer to "
                       f"learn (rows {[row + 1 for row in unanswered[:5]]}); each must end with the assistant's "
                       "turn", rows=unanswered)
        full = [json.loads(prompt) + [{"role": "assistant", "content": answer or ""}]
                for prompt, answer in zip(frame[PROMPT], answers)]
        counts, max_length = _token_counts(full, config)
        report.findings += conversations.quality_findings(full, counts, max_length, frame=frame)
        return report

    @classmethod
    def features(cls, frame, excluded):
        return [PROMPT]

    @classmethod
    def target_values(cls, frame, target, kind, separator):
        return frame[target].astype(object).where(frame[target].notna(), None)

    @classmethod
    def split_labels(cls, frame, y, kind):
        """Stratified by a category column when the data has one (an FAQ's held-out questions then cover
        every topic), else random."""
        names = {str(column).strip().lower(): column for column in frame.columns}
        column = next((names[name] for name in STRATA if name in names), None)
        if column is None:
            return y, "regression"  # splits.py: no strata
        labels = frame[column].astype(str).where(y.notna(), None)
        return labels, "multiclass"

    @classmethod
    def example(cls, kind: str, seed: int = 0):
        import tempfile

        from . import tiny

        rng = np.random.default_rng(seed)
        rows = []
        for index in range(48):
            code = int(rng.integers(10, 99))
            rows.append({"instruction": f"What is the permit code for zone {index % 4}?",
                         "output": f"Zone {index % 4} uses code {code}.", "category": f"zone{index % 4}"})
        folder = tiny.build(Path(tempfile.gettempdir()) / "modeldojo-tiny-chat-v1")
        return pd.DataFrame(rows), ANSWER, {"model.name": str(folder), "train.epochs": 1, "train.batch_size": 8,
                                            "train.learning_rate": 0.01, "evaluate.max_new_tokens": 6,
                                            "evaluate.baseline_questions": 3, "finetune.lora_rank": 4}

    @classmethod
    def search_space(cls, config, kind):
        return neural_search_space(5.0e-5, 1.0e-3)

    # -- the model -----------------------------------------------------------------------
    def fit(self, train, y_train, validation, y_validation, events: EventBus) -> dict[str, Any]:
        from .trainee import train_chat

        train_conversations = _conversations(train, y_train)
        validation_conversations = _conversations(validation, y_validation) if validation is not None else None
        self.base_name = self.config.model.name
        qlora = self.config.finetune.strategy == "qlora"
        if qlora:
            require_qlora()  # before loading anything
        events.emit(STAGE, name="model", detail=f"loading {resolve_model(self.base_name)}")
        model, self.tokenizer = load_base(self.base_name, four_bit=qlora)
        self.base_fingerprint = fingerprint(model)
        training = train_chat(model, self.tokenizer, train_conversations, validation_conversations, self.config,
                              events, self.workdir)
        self.model, self.template, self.adapter = training.model, training.template, training.adapter
        self.strategy = training.info["strategy"]
        self.train_pairs = ([json.loads(text) for text in train[PROMPT]], [str(a) for a in y_train])
        return training.info

    def predict(self, frame: pd.DataFrame) -> Prediction:
        return answer_rows(self.model, self.tokenizer, self.template, frame, self.config.evaluate.max_new_tokens)

    @property
    def input_columns(self) -> list[str]:
        return [PROMPT]

    @classmethod
    def scores(cls, kind, actual, prediction, separator):
        from . import metrics

        references, texts = [str(value) for value in actual], [str(value) for value in prediction.values]
        reasons = prediction.notes.get("finish_reasons") or []
        tokens = prediction.notes.get("completion_tokens") or []
        return {"rows": len(references), "rouge_l": metrics.rouge_l(texts, references),
                "exact_match": metrics.exact_match(texts, references),
                "stop_rate": sum(reason == "stop" for reason in reasons) / len(reasons) if reasons else 0.0,
                "mean_completion_tokens": float(np.mean(tokens)) if tokens else 0.0}

    @classmethod
    def primary_metric(cls, kind):
        return "rouge_l"

    @classmethod
    def worst(cls, frame, kind, y, prediction, count, separator):
        from . import metrics

        questions = [conversations.last_question(json.loads(text)) for text in frame[PROMPT]]
        rows = pd.DataFrame({"question": questions, "reference": [str(v) for v in y],
                             "answer": [str(v) for v in prediction.values]})
        rows["rouge_l"] = [metrics.rouge_l([a], [r]) for a, r in zip(rows["answer"], rows["reference"])]
        return rows.sort_values("rouge_l", kind="stable").head(count).reset_index(drop=True)

    def extra_evaluation(self, frame, y, prediction, events):
        from . import comparison

        test = _conversations(frame, y)
        scores = comparison.perplexity(self, test)
        sections = []
        if self.config.evaluate.baselines and self.train_pairs[0]:
            events.emit(STAGE, name="compare", detail="prompting, few-shot and retrieval on the test questions")
            table, html = comparison.compare(self, [json.loads(text) for text in frame[PROMPT]],
                                             [str(v) for v in y], prediction, events)
            scores["comparison"] = table
            sections.append(("Fine-tuning or prompting? The same test questions, four ways", html))
        return scores, sections

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "learner": resolve_model(self.base_name) if self.base_name != "auto" else
                "auto (packaged SmolLM2-135M-Instruct)", "strategy": self.strategy}

    # -- export ----------------------------------------------------------------------------
    def export_format(self, folder, format, quantize, frame, y):
        from . import exporting

        return exporting.export(self, Path(folder), format, quantize, frame)

    @classmethod
    def converse(cls, predictor, **options) -> int:
        """`dojo chat`: a terminal conversation with a served chat model (run or export)."""
        from .terminal import converse

        return converse(predictor, **options)

    @classmethod
    def exported_runtime(cls, folder, manifest, threads=0):
        from . import exporting

        return exporting.runtime(Path(folder), manifest, threads)

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory / TOKENIZER_FOLDER)
        (directory / TEMPLATE_FILE).write_text(self.template.text, encoding="utf-8")
        state = {"base_model": self.base_name, "base_fingerprint": self.base_fingerprint, "strategy": self.strategy,
                 "template_source": self.template.source, "end_of_turn": self.template.end_of_turn,
                 "added_tokens": list(self.template.added_tokens)}
        if self.strategy == "lora":
            from safetensors.torch import save_file

            adapter = directory / WEIGHT_FOLDERS["lora"]
            adapter.mkdir()
            self.adapter["config"].save_pretrained(str(adapter))
            save_file({k: v.contiguous() for k, v in self.adapter["state"].items()},
                      str(adapter / "adapter_model.safetensors"))
        elif self.strategy == "reft":
            from . import reft

            reft.save(self.model, directory / WEIGHT_FOLDERS["reft"])
        else:
            self.model.save_pretrained(directory / "weights")
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> "ChatTask":
        from ...config import Config
        from .template import ChatTemplate

        directory = Path(directory)
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        task = cls(Config.from_dict(meta.get("config", {})), meta["kind"], meta["target"])
        task.base_name, task.strategy = state["base_model"], state["strategy"]
        task.base_fingerprint = state.get("base_fingerprint", "")
        task.directory = directory  # export rebuilds the model as trained (base + adapter) from here
        task.model, task.tokenizer = task.unmerged(directory, state)
        if task.strategy == "lora":
            task.model = task.model.merge_and_unload()  # answers at the base model's speed
        text = (directory / TEMPLATE_FILE).read_text(encoding="utf-8")
        task.tokenizer.chat_template = text
        task.template = ChatTemplate(text, state["template_source"], state["end_of_turn"],
                                     tuple(state.get("added_tokens", ())))
        return task

    def unmerged(self, directory: Path, state: dict[str, Any] | None = None):
        """(model as trained — base + LoRA adapter, base + ReFT interventions, or full weights —, tokenizer)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .template import fit_embeddings

        directory = Path(directory)
        state = state or json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        tokenizer = AutoTokenizer.from_pretrained(directory / TOKENIZER_FOLDER)
        if state["strategy"] not in WEIGHT_FOLDERS:
            return AutoModelForCausalLM.from_pretrained(directory / "weights").eval(), tokenizer
        base, _ = load_base(state["base_model"])
        if state.get("base_fingerprint") and fingerprint(base) != state["base_fingerprint"]:
            raise ConfigError(f"{directory}: the base model {resolve_model(state['base_model'])} is not the one this "
                              "run was trained on (its weights differ); the adapter cannot be applied to it")
        fit_embeddings(base, tokenizer)
        if state["strategy"] == "lora":
            from peft import PeftModel

            with warnings.catch_warnings():  # PEFT reads transformers' deprecated `is_gradient_checkpointing`
                warnings.simplefilter("ignore", FutureWarning)
                return PeftModel.from_pretrained(base, directory / WEIGHT_FOLDERS["lora"]).eval(), tokenizer
        from . import reft

        return reft.load(base, directory / WEIGHT_FOLDERS["reft"]).eval(), tokenizer


def _conversations(frame: pd.DataFrame, answers: pd.Series) -> list[list[dict]]:
    return [json.loads(prompt) + [{"role": "assistant", "content": str(answer)}]
            for prompt, answer in zip(frame[PROMPT], answers)]


def answer_rows(model, tokenizer, template, frame: pd.DataFrame, max_new_tokens: int) -> Prediction:
    """Greedy answers to the rows' `messages`, with finish reasons and token counts (a run's model or an export's)."""
    from . import generation

    answers = generation.generate(model, tokenizer, template, [json.loads(text) for text in frame[PROMPT]],
                                  max_new_tokens=max_new_tokens, batch_size=PREDICT_BATCH)
    return Prediction(np.array([answer.text for answer in answers], dtype=object),
                      notes={"finish_reasons": [answer.finish_reason for answer in answers],
                             "completion_tokens": [answer.completion_tokens for answer in answers]})


def _token_counts(full: list[list[dict]], config) -> tuple[list[int] | None, int | None]:
    """Each conversation's length in the model's tokens, and the max length training applies (as train_chat
    decides it) — when the model's tokenizer is at hand (a local folder, or the packaged model); else
    (None, None) and no truncation check."""
    try:
        from transformers import AutoConfig, AutoTokenizer

        from .template import _render_ids, ensure_template

        path = resolve_model(config.model.name)
        tokenizer = AutoTokenizer.from_pretrained(path)
        positions = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
        template = ensure_template(tokenizer)
    except Exception:  # noqa: BLE001 - a hub id offline, a missing extra: the other checks still run
        return None, None
    limit = positions or tokenizer.model_max_length
    limit = config.model.max_length or min(limit, tokenizer.model_max_length or limit)
    return [len(_render_ids(tokenizer, conversation, template.text)) for conversation in full], limit
