"""`dojo export` for chat runs: LoRA merged into plain safetensors, or GGUF (f16 / q8_0 / f32) — each reloaded
and checked against the model as trained (base + adapter) on held-out prompts before it is accepted; a ReFT
run's interventions cannot be merged into weights, so it exports them beside its base model instead.

The folder always carries the run's one chat template (chat_template.jinja, and inside the tokenizer / GGUF
metadata byte-identical), so whatever loads the export renders the prompts training rendered."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import ConfigError
from ..base import Prediction

PARITY_PROMPTS = 16  # held-out prompts whose first 32 greedy tokens are compared
NEW_TOKENS = 32

GGUF_TYPES = {None: "f16", "f16": "f16", "fp16": "f16", "q8_0": "q8_0", "int8": "q8_0", "f32": "f32"}
GGUF_FILE, TEMPLATE_FILE, STATE_FILE = "model.gguf", "chat_template.jinja", "chat.json"


@dataclass
class ChatParity:
    format: str
    rows: int  # prompts compared
    tokens: int  # positions compared (teacher-forced over the reference's greedy continuation)
    agreement: float  # share of positions whose top-1 token is the same
    max_logit_diff: float
    max_logit_diff_allowed: float
    min_agreement: float
    template_identical: bool
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def explain(self) -> str:
        return (f"({self.format}) on {self.rows} held-out prompts × {NEW_TOKENS} greedy tokens: top-1 agreement "
                f"{self.agreement:.4f} (needed {self.min_agreement}), largest logit difference "
                f"{self.max_logit_diff:.2e} (allowed {self.max_logit_diff_allowed:.2e})"
                + ("" if self.template_identical else "; the chat template in the export differs from the run's"))


def export(task, folder: Path, format: str, quantize: str | None, frame: pd.DataFrame):
    """Write the export into `folder`; return (manifest details, ChatParity)."""
    from . import export as formats
    from .template import prompt_ids

    if task.strategy == "reft" and format in ("merged", "gguf"):
        if format == "gguf":
            raise ConfigError("a ReFT run cannot be exported as GGUF: its interventions edit hidden states at chosen "
                              "prompt positions, which no weight file (and no GGUF runtime) can express; `dojo "
                              "export RUN --format merged` writes the base model with its interventions instead")
        return _export_reft(task, folder, frame)
    if quantize is not None and format == "merged":
        raise ConfigError("--quantize applies to --format gguf (f16, q8_0, f32); merged weights stay fp32")
    if format == "gguf" and quantize not in GGUF_TYPES:
        raise ConfigError(f"--quantize {quantize!r}: gguf takes f16 (default), q8_0 or f32")
    reference, _ = task.unmerged(task.directory)  # base + adapter, as trained (not the merged copy in memory)
    prompts = [prompt_ids(task.tokenizer, json.loads(text), task.template.text)
               for text in frame["messages"].head(PARITY_PROMPTS)]
    if format == "merged":
        formats.write_merged(reference, task.tokenizer, task.template, folder)
        _write_template(task, folder)
        candidate = _merged_model(folder)
        numbers = formats.parity(reference, candidate, prompts, NEW_TOKENS, tolerance=formats.TOLERANCES["merged"],
                             min_agreement=formats.MIN_AGREEMENT["merged"])
        return {"layout": "merged", "template": TEMPLATE_FILE}, _report("merged", numbers, True, len(prompts))
    dtype = GGUF_TYPES[quantize]
    staging = Path(tempfile.mkdtemp(prefix="merged-", dir=folder.parent))
    try:
        formats.write_merged(reference, task.tokenizer, task.template, staging)
        formats.write_gguf(staging, folder / GGUF_FILE, dtype)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_template(task, folder)
    candidate, gguf_tokenizer = formats.load_gguf(folder / GGUF_FILE)
    identical = gguf_tokenizer.chat_template == task.template.text and all(
        prompt_ids(gguf_tokenizer, json.loads(text), task.template.text) == ids
        for text, ids in zip(frame["messages"].head(PARITY_PROMPTS), prompts))
    numbers = formats.parity(reference, candidate, prompts, NEW_TOKENS, tolerance=formats.TOLERANCES[dtype],
                             min_agreement=formats.MIN_AGREEMENT[dtype])
    return {"layout": "gguf", "file": GGUF_FILE, "dtype": dtype, "template": TEMPLATE_FILE}, \
        _report(f"gguf {dtype}", numbers, identical, len(prompts))


def _export_reft(task, folder: Path, frame: pd.DataFrame):
    from . import reft
    from .template import prompt_ids

    reference, tokenizer = task.unmerged(task.directory)
    reference.base.save_pretrained(folder / "base")
    reft.save(reference, folder / "reft")
    tokenizer.save_pretrained(folder / "tokenizer")
    _write_template(task, folder)
    candidate = _reft_model(folder)
    prompts = [prompt_ids(task.tokenizer, json.loads(text), task.template.text)
               for text in frame["messages"].head(PARITY_PROMPTS)]
    from . import export as formats

    numbers = formats.parity(reference, candidate, prompts, NEW_TOKENS, tolerance=formats.TOLERANCES["merged"],
                             min_agreement=formats.MIN_AGREEMENT["merged"])
    return {"layout": "reft", "template": TEMPLATE_FILE}, _report("reft", numbers, True, len(prompts))


def _report(format: str, numbers: dict[str, Any], template_identical: bool, prompts: int) -> ChatParity:
    passed = bool(numbers["passed"]) and template_identical
    return ChatParity(format, prompts, int(numbers["positions"]),
                      float(numbers["agreement"]), float(numbers["max_logit_diff"]), float(numbers["tolerance"]),
                      float(numbers["min_agreement"]), template_identical, passed)


def _write_template(task, folder: Path) -> None:
    (folder / TEMPLATE_FILE).write_text(task.template.text, encoding="utf-8")
    state = {"end_of_turn": task.template.end_of_turn, "template_source": task.template.source,
             "added_tokens": list(task.template.added_tokens)}
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")


def _merged_model(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _reft_model(folder: Path):
    from . import reft

    return reft.load(_merged_model(folder / "base"), folder / "reft").eval()


def runtime(folder: Path, manifest: dict[str, Any], threads: int = 0):
    """predict(frame or records) → Prediction over an export folder (what `dojo predict` / `dojo serve` run)."""
    from transformers import AutoTokenizer

    from ...config import Config
    from .task import ChatTask, answer_rows
    from .template import ChatTemplate

    if threads:
        import torch

        torch.set_num_threads(threads)
    folder, layout = Path(folder), manifest["preprocessing"]["layout"]
    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    text = (folder / TEMPLATE_FILE).read_text(encoding="utf-8")
    if layout == "gguf":
        from . import export as formats

        model, tokenizer = formats.load_gguf(folder / manifest["preprocessing"]["file"])
    else:
        model = _merged_model(folder) if layout == "merged" else _reft_model(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer" if layout == "reft" else folder)
    tokenizer.chat_template = text
    template = ChatTemplate(text, state["template_source"], state["end_of_turn"], tuple(state["added_tokens"]))
    config = Config.from_dict(manifest.get("config") or {})

    def predict(rows) -> Prediction:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
        return answer_rows(model, tokenizer, template, ChatTask.normalize(frame, config),
                           config.evaluate.max_new_tokens)

    predict.engine_parts = (model, tokenizer, template)  # the OpenAI routes serve an export with the same model
    return predict
