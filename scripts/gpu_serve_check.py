"""GPU check for serving (needs a CUDA machine; never part of CI): train the tiny text model there, serve the
run with the native (PyTorch) backend — it must land on the GPU and answer like the model — and export the
GPU-trained run to ONNX fp32 and fp16 with passing parity. Prints timings of a sequential and a concurrent
client for the record.

    python scripts/gpu_serve_check.py
"""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

import modeldojo as dojo
from modeldojo import tasks
from modeldojo.export.exporter import export
from modeldojo.serving.app import Settings, create_app
from modeldojo.serving.predictor import open_predictor

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serving_helpers import running  # noqa: E402


def main() -> None:
    assert torch.cuda.is_available(), "no GPU"
    print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    runs = Path(tempfile.mkdtemp())
    tasks.load_all()
    frame, target, settings = tasks.get("text").example("multiclass")
    data = runs / "reviews.csv"
    frame.to_csv(data, index=False)
    started = time.perf_counter()
    dojo.train(str(data), target=target, task="text", runs_dir=str(runs), tracking=False, name="t",
               overrides={**settings, "train.epochs": 3, "data.label_error_check": False})
    print(f"trained on the GPU in {time.perf_counter() - started:.1f} s")
    predictor = open_predictor("t", runs, backend="native")
    assert predictor.device == "cuda" and next(predictor.model._task.model.parameters()).is_cuda
    texts = frame[predictor.features[0]].tolist()
    expected = list(dojo.load(runs / "t").predict(frame.head(64)))
    with running(create_app(lambda: predictor, Settings(max_batch_size=64))) as url:
        answers = httpx.post(url + "/predict", json={"inputs": texts[:64]}).json()["predictions"]
        agreement = np.mean([a["label"] == e for a, e in zip(answers, expected)])
        assert agreement >= 0.95, f"GPU server agrees with the CPU model on {agreement:.2%} only"
        with httpx.Client() as client:
            started = time.perf_counter()
            for text in texts[:200]:
                client.post(url + "/predict", json={"inputs": [text]})
            sequential = 200 / (time.perf_counter() - started)
            with ThreadPoolExecutor(16) as pool:
                started = time.perf_counter()
                codes = list(pool.map(lambda t: client.post(url + "/predict", json={"inputs": [t]}).status_code,
                                      texts[:200] * 4))
                concurrent = 800 / (time.perf_counter() - started)
        metrics = httpx.get(url + "/metrics").text
    assert set(codes) == {200}
    count = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("dojo_batch_size_count")))
    total = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("dojo_batch_size_sum")))
    print(f"native PyTorch on cuda: {sequential:.0f} req/s one client, {concurrent:.0f} req/s 16 threads "
          f"(httpx, Python client-bound), mean batch {total / count:.1f}; label agreement with the CPU model "
          f"{agreement:.3f}")
    for quantize in (None, "fp16"):
        result = export("t", runs_dir=runs, quantize=quantize)
        parity = result["parity"]
        print(f"export {quantize or 'fp32'} of the GPU-trained run: passed={parity['passed']} "
              f"max |Δp| {parity['max_abs_diff']:.2e}")
        assert parity["passed"]
    print("GPU serving check: OK")


if __name__ == "__main__":
    main()
