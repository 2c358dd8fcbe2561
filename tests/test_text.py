import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import modeldojo as dojo
from modeldojo.errors import ConfigError, DataError, TrainingError
from modeldojo.tasks import detect
from modeldojo.tasks.text import data as text_data
from modeldojo.training.batches import length_grouped

from text_helpers import reviews, tiny_model


def train(frame, target, overrides, tmp_path, **extra):
    return dojo.train(frame, target=target, runs_dir=str(tmp_path / "runs"), tracking=False,
                      overrides={**overrides, **extra.pop("more", {})}, **extra)


def test_text_task_is_detected_and_learns(tmp_path):
    frame, target, overrides = reviews()
    assert detect(frame, target) == "text"
    assert detect(frame.assign(review=frame["stars"]), target) == "tabular"
    result = train(frame, target, overrides, tmp_path)
    assert result.run.status()["task"] == "text"
    assert result.metrics["accuracy"] >= 0.8
    assert result.info["max_length"] == 16 and result.info["trainable_percent"] == 100.0
    assert (result.path / "history.json").is_file() and 'alt="learning curves"' in (result.path / "report.html").read_text()
    probabilities = result.model.predict_proba(frame.head(4))
    assert list(probabilities.columns) == ["bad", "good", "mid"] and np.allclose(probabilities.sum(axis=1), 1)


def test_length_grouped_batches_are_deterministic_and_cover_every_example():
    lengths = np.random.default_rng(0).integers(5, 200, 1000)
    first = length_grouped(lengths, 16, seed=3, epoch=1)
    assert first == length_grouped(lengths, 16, seed=3, epoch=1)
    assert first != length_grouped(lengths, 16, seed=3, epoch=2)
    assert sorted(i for batch in first for i in batch) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in first])
    assert spread < 20  # similar lengths share a batch: little padding
    assert text_data.choose_max_length(np.array([10] * 96 + [300] * 4), 512) == 16


def _weights(model_dir):
    return load_file(str(model_dir / "model" / "model.safetensors"))


def _changed(before, after, prefix):
    keys = [k for k in after if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys if k in before)


@pytest.mark.parametrize("strategy, frozen, trained", [
    ("head", ["embeddings", "encoder.layer.0", "encoder.layer.1"], []),
    ("freeze", ["embeddings", "encoder.layer.0"], ["encoder.layer.1"]),
    ("full", ["embeddings.word_embeddings"], ["embeddings.LayerNorm", "encoder.layer.0", "encoder.layer.1"]),
    ("full+tokens", [], ["embeddings.word_embeddings", "encoder.layer.0", "encoder.layer.1"]),
    ("lora", ["embeddings"], ["encoder.layer.0", "encoder.layer.1"]),
])
def test_each_strategy_trains_exactly_its_parameters(strategy, frozen, trained, tmp_path):
    from transformers import AutoModel

    frame, target, overrides = reviews("binary")
    base = AutoModel.from_pretrained(overrides["model.name"]).state_dict()
    result = train(frame, target, overrides, tmp_path,
                   more={"finetune.strategy": strategy.split("+")[0], "finetune.freeze_layers": 1, "train.epochs": 2,
                         "finetune.train_token_embeddings": strategy.endswith("+tokens")})
    after = _weights(result.run.model_dir)
    assert not any("lora" in k for k in after), "LoRA must be merged on save"
    assert not any("pooler" in k for k in after), "mean pooling: BERT's pooler is dropped, not shipped"
    head = load_file(str(result.run.model_dir / "head.safetensors"))
    assert set(head) == {"weight", "bias"} and head["weight"].shape[0] == 2
    for prefix in frozen:
        assert not _changed(base, after, prefix), f"{strategy} changed {prefix}"
    for prefix in trained:
        assert _changed(base, after, prefix), f"{strategy} did not train {prefix}"
    percent = result.info["trainable_percent"]
    assert (percent == 100.0) == (strategy == "full+tokens")


def test_unknown_strategy_and_too_many_frozen_layers(tmp_path):
    frame, target, overrides = reviews("binary")
    with pytest.raises(ConfigError, match="unknown fine-tuning strategy"):
        train(frame, target, overrides, tmp_path, more={"finetune.strategy": "lorax"})
    with pytest.raises(ConfigError, match="this model has 2 layers"):
        train(frame, target, overrides, tmp_path, name="f",
              more={"finetune.strategy": "freeze", "finetune.freeze_layers": 5})


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    from modeldojo.runs import Run
    from modeldojo.tasks.text import task as text_task

    original = text_task._Trainee.loss
    calls = {"n": 0}

    def poisoned(self, model, batch):
        calls["n"] += 1
        loss = original(self, model, batch)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(text_task._Trainee, "loss", poisoned)
    frame, target, overrides = reviews("binary")
    with pytest.raises(TrainingError, match="non-finite loss .* at step 3"):
        train(frame, target, overrides, tmp_path, name="nan", more={"train.checkpoint_every": 1})
    run = Run.open("nan", tmp_path / "runs")
    assert run.status()["status"] == "failed" and not run.model_dir.exists()
    assert [p.name for p in sorted((run.directory / "checkpoints").iterdir())][-1] == "step-00000002"


def test_bad_text_inputs(tmp_path):
    frame, target, overrides = reviews("binary")
    with pytest.raises(DataError, match="no text column to learn from; left out by the data checks: 'review'"):
        train(frame.assign(review=""), target, overrides, tmp_path, task="text")
    some_empty = frame.assign(review=frame["review"].where(frame.index % 10 != 0, ""))
    assert train(some_empty, target, overrides, tmp_path, name="some").metrics["rows"] > 0  # empty rows: no crash
    with pytest.raises(DataError, match="target column 'label' not found"):
        train(frame, "label", overrides, tmp_path)
    with pytest.raises(ConfigError, match="not regression"):
        train(frame.assign(stars=np.linspace(0, 1, len(frame))), target, overrides, tmp_path, task="text",
              kind="regression")


def test_label_unseen_in_training_is_scored_as_an_error_not_a_crash(tmp_path, write_csv):
    from modeldojo.api import evaluate

    frame, target, overrides = reviews("binary")
    result = train(frame, target, overrides, tmp_path, name="b")
    holdout = frame.head(10).copy()
    holdout.loc[:4, "stars"] = "mixed"  # a label the model has never seen
    scores = evaluate("b", write_csv(holdout, "holdout.csv"), runs_dir=tmp_path / "runs")["metrics"]
    assert scores["rows"] == 10 and scores["accuracy"] <= 0.5
    assert "mixed" in scores["per_class"] and scores["per_class"]["mixed"]["recall"] == 0.0


def test_texts_in_a_non_utf8_file_name_the_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("review,stars\n".encode() + "un café très bon,good\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"byte offset \d+ \(line 2, column 7\).*--encoding"):
        dojo.train(str(path), target="stars", runs_dir=str(tmp_path / "runs"), tracking=False,
                   overrides={"data.encoding": "utf-8"})  # auto would read it as cp1252


def test_dojo_predict_on_a_jsonl_of_texts(tmp_path, capsys):
    from modeldojo.cli import main

    frame, target, overrides = reviews("binary")
    train(frame, target, overrides, tmp_path, name="t")
    texts = tmp_path / "new.jsonl"
    frame[["review"]].head(6).to_json(texts, orient="records", lines=True)
    out = tmp_path / "predictions.csv"
    assert main(["predict", "t", "--runs-dir", str(tmp_path / "runs"), "--data", str(texts), "--out", str(out)]) == 0
    import pandas as pd

    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["review", "prediction", "probability_bad", "probability_good"]
    assert (predictions["prediction"] == frame[target].head(6).to_numpy()).mean() >= 0.8


def test_multilabel_from_delimited_strings_and_from_json_lists(tmp_path):
    frame, target, overrides = reviews("multilabel")
    assert set(frame[target]) == {"", "late", "tasty", "late|tasty"}
    result = train(frame, target, overrides, tmp_path, kind="multilabel", name="strings")
    assert result.run.status()["kind"] == "multilabel"
    assert result.metrics["f1_micro"] >= 0.9 and result.metrics["accuracy"] >= 0.8  # accuracy = whole set right
    assert set(result.metrics["per_class"]) == {"late", "tasty"} and "hamming_loss" in result.metrics
    probabilities = result.model.predict_proba(frame.head(20))
    assert list(probabilities.columns) == ["late", "tasty"]
    assert not np.allclose(probabilities.sum(axis=1), 1)  # independent per label, not a softmax
    predicted = result.model.predict(frame.head(20))
    assert (predicted == frame[target].head(20).to_numpy()).mean() >= 0.8

    # The same labels as JSON arrays (JSONL): multi-label is recognised without task.kind.
    lists = frame.assign(**{target: frame[target].map(lambda cell: cell.split("|") if cell else [])})
    path = tmp_path / "reviews.jsonl"
    lists.to_json(path, orient="records", lines=True)
    result = dojo.train(str(path), target=target, runs_dir=str(tmp_path / "runs"), tracking=False, name="lists",
                        overrides=overrides)
    assert result.run.status()["kind"] == "multilabel" and result.metrics["f1_micro"] >= 0.9


def test_multilabel_predictions_in_dojo_predict_and_a_label_unseen_in_training(tmp_path, write_csv):
    from modeldojo.api import evaluate
    from modeldojo.cli import main

    frame, target, overrides = reviews("multilabel")
    separated = frame.assign(**{target: frame[target].str.replace("|", ";")})
    train(separated, target, overrides, tmp_path, kind="multilabel", name="m", more={"data.label_separator": ";"})
    out = tmp_path / "predictions.csv"
    assert main(["predict", "m", "--runs-dir", str(tmp_path / "runs"), "--data",
                 str(write_csv(frame[["review"]].head(12), "new.csv")), "--out", str(out)]) == 0
    predictions = pd.read_csv(out, keep_default_na=False)
    assert list(predictions.columns) == ["review", "prediction", "probability_late", "probability_tasty"]
    assert set(predictions["prediction"]) <= {"", "late", "tasty", "late;tasty"}
    holdout = separated.head(10).copy()
    holdout.loc[:4, target] = "late;spicy"  # 'spicy' was never a training label
    scores = evaluate("m", write_csv(holdout, "holdout.csv"), runs_dir=tmp_path / "runs")["metrics"]
    assert scores["per_class"]["spicy"]["recall"] == 0.0 and scores["unseen_label_rows"] == 5
