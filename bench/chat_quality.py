"""Chat quality and time-to-model on the Zaragoza construction FAQ (503 English pairs, CC-BY-4.0, the PyPI package
`zaragoza-construction-faq`): `dojo train faq.jsonl --task chat` with LoRA and with ReFT on the packaged
SmolLM2-135M-Instruct, greedy answers on the held-out questions (stratified by category) with the run's one
template — ROUGE-L, exact match, stop rate, and the report's four-way table (base model prompted, few-shot,
retrieval-augmented, fine-tuned). Each run is a real `dojo train` subprocess; its wall time is measured.

    .venv/bin/pip install zaragoza-construction-faq==1.2.1     # data only (in the `bench` extra)
    .venv/bin/python bench/chat_quality.py                      # LoRA (fresh model cache: first run) + ReFT
    .venv/bin/python bench/chat_quality.py --variants lora-warm # a later LoRA run (cache already converted)
    .venv/bin/python bench/chat_quality.py --set train.epochs=3 # any setting, for every run
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--no-tracking", "-q", "data.test_fraction=0.15", "data.validation_fraction=0.05", "train.batch_size=4",
          "model.max_length=256", "train.epochs=1", "train.precision=fp32", "evaluate.max_new_tokens=160",
          "evaluate.baseline_questions=40", "train.threads=2"]
VARIANTS = {
    "lora": ["--strategy", "lora", "train.learning_rate=0.001", "finetune.lora_rank=8"],
    "lora-warm": ["--strategy", "lora", "train.learning_rate=0.001", "finetune.lora_rank=8",
                  "evaluate.baselines=false"],
    # Four layers, rank 4: ~0.4 % of LoRA's trainable parameters.
    "reft": ["--strategy", "reft", "train.learning_rate=0.004", "finetune.reft_rank=4",
             "finetune.reft_layers=[3,9,18,24]", "evaluate.baselines=false"],
}


def faq_file(folder: Path) -> Path:
    spec = importlib.util.find_spec("zaragoza_construction_faq")
    if spec is None:
        sys.exit("pip install zaragoza-construction-faq==1.2.1 (the benchmark's data)")
    source = Path(next(iter(spec.submodule_search_locations))) / "data" / "faq-en.jsonl"
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    path = folder / "faq.jsonl"
    path.write_text("".join(json.dumps({"instruction": r["q"], "output": r["a"], "category": r["category"]},
                                       ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run(variant: str, data: Path, runs: Path, cache: Path, overrides: list[str]) -> dict:
    environment = {**os.environ, "MODELDOJO_CACHE": str(cache)}
    command = [sys.executable, "-m", "modeldojo.cli", "train", str(data), "--task", "chat", "--name", variant,
               "--runs-dir", str(runs), *COMMON, *VARIANTS[variant], *overrides]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=environment, cwd=ROOT)
    wall = time.perf_counter() - started
    metrics = json.loads((runs / variant / "metrics.json").read_text())
    return {"variant": variant, "wall_s": wall, "test": metrics["test"], "fit": metrics["fit"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["lora", "reft"], choices=sorted(VARIANTS))
    parser.add_argument("--cache", help="model cache folder (default: a fresh one, so the first run converts the "
                                        "packaged GGUF)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra settings for every run, after the variant's (e.g. train.epochs=3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    print(f"runs and data in {work}", flush=True)
    cache = Path(args.cache) if args.cache else work / "cache"
    data = faq_file(work)
    results = [run(variant, data, work / "runs", cache, args.set) for variant in args.variants]
    print("\n| run | wall s | train s | trainable params | ROUGE-L | exact match | stop rate | perplexity |")
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        test, fit = result["test"], result["fit"]
        print(f"| {result['variant']} | {result['wall_s']:.0f} | {fit.get('train_seconds', float('nan')):.0f} | "
              f"{fit.get('trainable_parameters', 0):,} | {test['rouge_l']:.3f} | {test['exact_match']:.3f} | "
              f"{test['stop_rate']:.3f} | {test.get('perplexity', float('nan')):.2f} |")
    for result in results:
        if result["test"].get("comparison"):
            print(f"\nFour ways on the same held-out questions ({result['variant']} run):\n")
            print("| method | ROUGE-L | exact match | stop rate |\n|---|---|---|---|")
            for row in result["test"]["comparison"]:
                print(f"| {row['method']} | {row['rouge_l']:.3f} | {row['exact_match']:.3f} | {row['stop_rate']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
