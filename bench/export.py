"""ONNX Runtime fp32 / int8 / fp16 vs PyTorch eager at batch 1, on the fine-tuned MiniLM reviews classifier:
median latency of one forward pass (texts cut to 64 tokens) and test accuracy. Peer: the run's own
PyTorch model, same token ids, same run. Prints the ratios.

    .venv/bin/python examples/reviews_data.py && .venv/bin/dojo train examples/reviews.yaml
    .venv/bin/python bench/export.py --run reviews            # ~2 min on 2 cores
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd

import modeldojo as dojo
from modeldojo.export import onnx_format
from modeldojo.export.exporter import export
from modeldojo.export.runtime import ExportedModel

warnings.filterwarnings("ignore")


def median_ms(run_once, inputs) -> float:
    for item in inputs[:10]:  # warm-up: first calls allocate
        run_once(item)
    times = []
    for item in inputs:
        started = time.perf_counter()
        run_once(item)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="reviews")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--test", default="data/reviews_test.csv")
    parser.add_argument("--texts", type=int, default=300, help="texts timed at batch 1")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    original = dojo.load(f"{args.runs_dir}/{args.run}" if "/" not in args.run else args.run)
    task = original._task
    test = pd.read_csv(args.test)
    exports = {}
    for quantize in (None, "int8", "fp16"):
        result = export(args.run, runs_dir=args.runs_dir, quantize=quantize)
        exports[quantize or "fp32"] = ExportedModel(result["folder"])
        parity = result["parity"]
        print(f"export {quantize or 'fp32'}: parity max |Δp| {parity['max_abs_diff']:.2e}, agreement "
              f"{parity['agreement']:.4f}, {parity['metric']} {parity['original']:.4f} → {parity['exported']:.4f}")

    texts = task._texts(test.head(args.texts))
    ids = [sequence[:args.tokens] for sequence in task.tokenizer(texts, truncation=True,
                                                                  max_length=args.tokens)["input_ids"]]
    arrays = [(np.asarray([s], dtype=np.int64), np.ones((1, len(s)), dtype=np.int64)) for s in ids]
    model = task.model.eval()

    def torch_forward(item):
        with torch.inference_mode():
            model(input_ids=torch.from_numpy(item[0]), attention_mask=torch.from_numpy(item[1]))

    rows = [{"runtime": "PyTorch eager", "ms": median_ms(torch_forward, arrays)}]
    for name, exported in exports.items():
        session = onnx_format.session(exported.folder / onnx_format.FILE)
        rows.append({"runtime": f"ONNX Runtime {name}", "ms": median_ms(
            lambda item: session.run(None, {"input_ids": item[0], "attention_mask": item[1]}), arrays)})

    features = test[original.features]
    truth = test[original.target].astype(str).to_numpy()
    reference = np.asarray(original.predict(features)).astype(str)
    rows[0]["accuracy"] = float(np.mean(reference == truth))
    rows[0]["agreement"] = 1.0
    for row, exported in zip(rows[1:], exports.values()):
        labels = np.asarray(exported.predict(features).values).astype(str)
        row["accuracy"] = float(np.mean(labels == truth))
        row["agreement"] = float(np.mean(labels == reference))
    table = pd.DataFrame(rows)
    table["speed-up vs PyTorch"] = table["ms"].iloc[0] / table["ms"]
    table["accuracy change (points)"] = 100 * (table["accuracy"] - table["accuracy"].iloc[0])
    print(f"\nbatch 1, {len(arrays)} test reviews cut to ≤ {args.tokens} tokens (mean "
          f"{np.mean([len(s) for s in ids]):.1f}); accuracy on all {len(test)} test reviews "
          f"({torch.get_num_threads()} torch threads)")
    print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
