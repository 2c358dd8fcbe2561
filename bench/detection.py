"""Object detection vs ultralytics YOLOv8n / YOLO11n, trained from their YAMLs (no weights can be downloaded here),
on digits-on-canvas images (examples/detection_digits.py; train seed 0, validation seed 1, a separate set).

Same images, same image size, same wall-clock budget and the same validation set for both systems; both systems'
predictions on the validation images are scored by pycocotools (modeldojo.tasks.detection.metrics, max 100
detections per image). The peer predicts with its own val() settings (conf 0.001, iou 0.7); ours is scored on every
box its predict_frame kept after NMS (Prediction.notes["detections"], not the 0.25-thresholded JSON values). The
peer's own val() mAP is reported beside, for reference only. The budget: ultralytics trains --epochs (or `time=`
--budget-seconds) and ours gets `train.time_limit` = --budget-seconds, else the fastest peer's measured training
wall-clock (`--only ours` takes it from the peer rows already in --out). "train wall s" is each whole train call
(setup, validation, the final evaluation and saving included), so it can exceed the budget on either side.
Each peer's best.pt is picked by ultralytics on the validation set (its default), as ours picks on
`data.validation_path`.

The peer runs in its OWN virtual environment, never the project's: torch 2.14.1 + torchvision 0.29.1 (the local
wheel cache) + ultralytics 8.4.190 (AGPL: a benchmark peer only), created on first use under
~/.cache/modeldojo-bench/ultralytics-venv (~5.5 GB; bench/detection_ultralytics.py runs in it as a subprocess with
YOLO_OFFLINE=1, workers=0, device=cpu, 2 torch threads).

Targets: ours mAP50-95 >= best peer + 0.10 at equal budget; ours mAP50 > 0 with 25 training images; the curve
at 25 / 50 / 100 / all training images. Latency: ONNX Runtime, batch 1, 2 intra-op threads, p50/p95 over 200
images at 320 and 640 px, NMS inside both graphs (ultralytics' export nms=True, its conf 0.25 default); each side's
latency model is a short (--latency-train-seconds) training at that input size on 25 images, and both time the same
input tensors (generated images of exactly that size, seed 2), session.run only.

    nice -n 10 .venv/bin/python bench/detection.py --out bench-detection.json          # everything (hours on 2 cores)
    nice -n 10 .venv/bin/python bench/detection.py --only peer --epochs 20             # peers only: 240 images, 160 px
    nice -n 10 .venv/bin/python bench/detection.py --only ours --budget-seconds 1020   # ours at a given budget
    nice -n 10 .venv/bin/python bench/detection.py --only curve --curve 25 50 100 all --curve-peers yolov8n
    nice -n 10 .venv/bin/python bench/detection.py --only latency --latency-sizes 320 640
    # smoke test (~1 min): 30 images, 96 px, 1 epoch, one peer, latency over 10 images
    nice -n 10 .venv/bin/python bench/detection.py --train-images 30 --validation-images 10 --size 96 --epochs 1 \
        --peers yolov8n --curve 10 all --latency-sizes 96 --latency-images 10 --latency-train-seconds 10 \
        --work /tmp/detection-smoke --out /tmp/detection-smoke.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from detection_digits import NAMES, generate  # noqa: E402

from modeldojo.tasks.detection.formats import read_dataset  # noqa: E402
from modeldojo.tasks.detection.metrics import evaluate_detections  # noqa: E402

warnings.filterwarnings("ignore")
HELPER = Path(__file__).resolve().parent / "detection_ultralytics.py"
PEER_VENV = Path.home() / ".cache" / "modeldojo-bench" / "ultralytics-venv"
# torch / torchvision: the pair in the local wheel cache that imports together (shared README); ultralytics is
# pinned to the release measured here; onnx + onnxslim for its ONNX export (it would try to pip-install them).
PEER_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "ultralytics==8.4.190", "onnx", "onnxslim", "onnxruntime"]
THREADS = 2
LATENCY_TRAIN_IMAGES = 25


# --- the peer's environment --------------------------------------------------------------------------------

def peer_python(venv: Path) -> Path:
    """The peer venv's python; created (and its packages installed) on first use."""
    python, marker = venv / "bin" / "python", venv / ".modeldojo-bench-ready"
    if not marker.exists():
        started = time.perf_counter()
        print(f"creating the peer venv {venv} ({' '.join(PEER_PACKAGES)}; ~5.5 GB, minutes) …", flush=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
        marker.write_text(" ".join(PEER_PACKAGES), encoding="utf-8")
        print(f"peer venv ready in {time.perf_counter() - started:.0f} s", flush=True)
    return python


def run_peer(args, *helper_args: str) -> dict:
    out = Path(args.work) / "peer-output.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(Path(args.work) / "ultralytics-config"),
           "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    command = [str(peer_python(Path(args.peer_venv))), str(HELPER), *helper_args, "--threads", str(THREADS),
               "--out", str(out)]
    log = Path(args.work) / "peer.log"
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        finished = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if finished.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"ultralytics helper failed (exit {finished.returncode}); end of {log}:\n{tail}")
    return json.loads(out.read_text(encoding="utf-8"))


# --- data ---------------------------------------------------------------------------------------------------

def dataset(args, images: int, seed: int, size: int | None = None) -> Path:
    """A generated YOLO folder, made once per (images, size, seed). The first n images of a seed are the same
    whatever the count, so the curve's smaller training sets are prefixes of the full one."""
    size = size or args.size
    folder = Path(args.work) / "data" / f"digits-{images}-{size}px-seed{seed}"
    if not (folder / "data.yaml").exists():
        generate(folder, images=images, size=size, seed=seed)
    return folder


def peer_yaml(args, train: Path, validation: Path) -> Path:
    """ultralytics' data yaml: absolute train / val image folders, the same class order as ours."""
    import yaml

    path = Path(args.work) / "data" / f"peer-{train.name}--{validation.name}.yaml"
    path.write_text(yaml.safe_dump({"path": str(train.parent), "train": str(train / "images"),
                                    "val": str(validation / "images"), "names": dict(enumerate(NAMES))},
                                   sort_keys=False), encoding="utf-8")
    return path


def ground_truth(validation: Path) -> tuple[list[str], list[dict]]:
    data = read_dataset(validation)
    grouped = dict(tuple(data.boxes.groupby("image")))
    paths, truth = [], []
    for index, image in enumerate(data.images):
        boxes = grouped.get(index)
        paths.append(str(Path(image.path).resolve()))
        truth.append({"boxes": np.zeros((0, 4)) if boxes is None else boxes[["x_min", "y_min", "x_max", "y_max"]]
                      .to_numpy(float), "class_ids": np.zeros(0, int) if boxes is None else boxes["class_id"]
                      .to_numpy(int), "width": image.width, "height": image.height})
    return paths, truth


def score(validation: Path, predicted: dict[str, dict]) -> dict:
    """pycocotools mAP of predictions keyed by absolute image path (an image without a record: no detections)."""
    paths, truth = ground_truth(validation)
    missing = [path for path in paths if path not in predicted]
    if len(missing) == len(paths):
        raise RuntimeError(f"no prediction matches a validation image (e.g. {paths[0]})")
    records = [predicted.get(path, {"boxes": [], "class_ids": [], "scores": []}) for path in paths]
    metrics = evaluate_detections(truth, records, NAMES)
    return {"mAP50-95": metrics["mAP50-95"], "mAP50": metrics["mAP50"], "mAP75": metrics["mAP75"],
            "unpredicted images": len(missing)}


# --- the two systems ----------------------------------------------------------------------------------------

def train_peer(args, peer: str, train: Path, validation: Path, size: int, seconds: float | None,
               predict: bool = True) -> dict:
    name = f"{peer}-{train.name}-{size}px" + ("" if predict else "-latency")
    helper_args = ["train", "--model", f"{peer}.yaml", "--data", str(peer_yaml(args, train, validation)),
                   "--imgsz", str(size), "--epochs", str(args.epochs), "--batch", str(args.batch),
                   "--project", str(Path(args.work) / "peer-runs"), "--name", name]
    if seconds:
        helper_args += ["--time-s", str(seconds)]
    if predict:
        helper_args += ["--predict", str(validation / "images")]
    result = run_peer(args, *helper_args)
    row = {"system": peer, "train images": count_images(train), "epochs": result["epochs_run"],
           "train wall s": result["wall_s"], "budget s": seconds or None, "best": result["best"],
           "versions": result["versions"],
           "own val mAP50-95": result["val_mAP50-95"], "own val mAP50": result["val_mAP50"]}
    if predict:
        row.update(score(validation, {p["image"]: p for p in result["predictions"]}))
    return row


def ours_available() -> bool:
    try:
        from modeldojo import tasks

        return tasks.get("detection") is not None
    except Exception:  # noqa: BLE001 - not registered yet (Registry.get raises), or its import fails
        return False


def train_ours(args, train: Path, validation: Path, size: int, seconds: float, epochs: int | None,
               predict: bool = True) -> dict:
    import modeldojo

    name = f"ours-{train.name}-{size}px" + ("" if predict else "-latency")
    overrides = {"model.image_size": size, "train.time_limit": float(seconds),
                 "run.runs_dir": str(Path(args.work) / "runs"), "run.name": name, "run.overwrite": True,
                 "tracking.enabled": False, "data.test_fraction": 0.0, "data.validation_path": str(validation)}
    if epochs:
        overrides["train.epochs"] = epochs
    import torch  # noqa: F401 - imported before the clock starts, as the peer's subprocess imports before its clock

    started = time.perf_counter()
    result = modeldojo.train(str(train), task="detection", overrides=overrides)
    wall = time.perf_counter() - started
    info = result.info or {}
    row = {"system": "ours", "train images": count_images(train), "epochs": info.get("epochs_completed"),
           "steps": info.get("steps"), "train wall s": wall, "budget s": seconds,
           "stopped by time": info.get("stopped_by_time_limit"), "run": str(result.path)}
    if predict:
        # predict_frame reads the folder; read_source gives its rows (absolute image paths) in the same order
        frame = modeldojo.tasks.get("detection").read_source(validation)
        prediction = result.model.predict_frame(str(validation))
        if len(prediction.values) != len(frame):
            raise RuntimeError(f"{len(prediction.values)} predictions for {len(frame)} validation images")
        # mAP from every box kept after NMS (notes["detections"], original-image pixels), as the peer's conf=0.001
        # predictions; `values` holds only the boxes at the confidence threshold (0.25), for people to read
        raw = (prediction.notes or {}).get("detections")
        predicted = {}
        for index, (path, value) in enumerate(zip(frame["image"], prediction.values)):
            if raw is not None:
                record = {key: np.asarray(raw[index][key]) for key in ("boxes", "scores", "class_ids")}
            else:
                detections = json.loads(value) if isinstance(value, str) else value
                record = {"boxes": [d["box"] for d in detections], "scores": [d["score"] for d in detections],
                          "class_ids": [NAMES.index(str(d["class"])) for d in detections]}
            predicted[str(Path(path).resolve())] = record
        row["scored boxes"] = "all after NMS" if raw is not None else "at the confidence threshold"
        row.update(score(validation, predicted))
    return row


def guarded(measure, **row) -> dict:
    """Ours is still being built: a failure is printed and recorded as a row, and the peers' results stand."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        print(f"ours: failed ({error!r})", flush=True)
        return {"system": "ours", **({"train images": row["train"]} if "train" in row else row),
                "error": repr(error)}


def count_images(folder: Path) -> int:
    return sum(1 for _ in (folder / "images").iterdir())


def compare(args, images: int, peers: list[str], ours: bool, previous: list[dict] = ()) -> list[dict]:
    """Peers (with --epochs, or `time=` --budget-seconds), then ours at the same budget, on `images` images."""
    train, validation = dataset(args, images, 0), dataset(args, args.validation_images, 1)
    rows = []
    for peer in peers:
        rows.append(train_peer(args, peer, train, validation, args.size, args.budget_seconds))
        show(rows[-1:])
    if ours:
        if not ours_available():
            print("ours: detection task not available yet", flush=True)
            return rows
        walls = [row["train wall s"] for row in [*rows, *previous]
                 if row["system"] != "ours" and row["train images"] == count_images(train)]
        budget = args.budget_seconds or (min(walls) if walls else None)
        if budget is None:
            raise SystemExit("ours needs a budget: pass --budget-seconds, or run the peers first (same --out)")
        rows.append(guarded(lambda: train_ours(args, train, validation, args.size, budget,
                                                args.our_epochs or args.epochs), train=count_images(train)))
        show(rows[-1:])
    return rows


# --- latency ------------------------------------------------------------------------------------------------

def latency_inputs(args, size: int) -> list[np.ndarray]:
    """Square generated images at exactly `size` px: letterboxing is the identity, the same tensor feeds both."""
    from PIL import Image

    folder = dataset(args, args.latency_images, 2, size)
    paths = sorted((folder / "images").iterdir())
    return [np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
                                 .transpose(2, 0, 1)[None] / 255.0) for path in paths]


def time_onnx(path: str | Path, inputs: list[np.ndarray], warmup: int = 10) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for item in (inputs * (warmup // len(inputs) + 1))[:warmup]:
        session.run(None, {name: item})
    times = []
    for item in inputs:
        started = time.perf_counter()
        session.run(None, {name: item})
        times.append(1000 * (time.perf_counter() - started))
    return {"p50 ms": statistics.median(times), "p95 ms": float(np.percentile(times, 95)), "runs": len(times),
            "onnx": str(path)}


def latency(args, peers: list[str], ours: bool) -> list[dict]:
    # Latency models train on a small set: their weights only decide how many boxes reach the NMS in the graph.
    train = dataset(args, min(LATENCY_TRAIN_IMAGES, args.train_images), 0)
    validation = dataset(args, args.validation_images, 1)
    rows = []
    ours = ours and ours_available()
    for size in args.latency_sizes:
        inputs = latency_inputs(args, size)
        for peer in peers:  # a short training at this input size, then ultralytics' own ONNX export (NMS inside)
            trained = train_peer(args, peer, train, validation, size, args.latency_train_seconds, predict=False)
            exported = run_peer(args, "export", "--weights", trained["best"], "--imgsz", str(size))
            rows.append({"system": peer, "size": size, "nms in graph": exported["nms"],
                         **time_onnx(exported["onnx"], inputs)})
            show(rows[-1:])
        if ours:
            from modeldojo.export.exporter import export

            def measure() -> dict:
                trained = train_ours(args, train, validation, size, args.latency_train_seconds, 1, predict=False)
                folder = Path(export(trained["run"], format="onnx")["folder"])
                return {"system": "ours", "size": size, "nms in graph": True,
                        **time_onnx(folder / "model.onnx", inputs)}

            rows.append(guarded(measure, size=size))
            show(rows[-1:])
    if not ours:
        print("ours: detection task not available yet", flush=True)
    return rows


# --- output -------------------------------------------------------------------------------------------------

def show(rows: list[dict], header: bool = True) -> None:
    hidden = {"best", "run", "onnx", "versions"}
    frame = pd.DataFrame([{k: v for k, v in row.items() if k not in hidden} for row in rows])
    print(frame.to_string(index=False, header=header, float_format=lambda v: f"{v:.4f}"), flush=True)


def gaps(rows: list[dict]) -> list[dict]:
    """Per training-set size: ours minus the best peer (pycocotools mAP50-95 and mAP50)."""
    out = []
    for images in sorted({row["train images"] for row in rows}):
        group = [row for row in rows if row["train images"] == images and row.get("mAP50-95") is not None]
        peers = [row for row in group if row["system"] != "ours"]
        ours = [row for row in group if row["system"] == "ours"]
        if not (peers and ours):
            continue
        best = max(peers, key=lambda row: row["mAP50-95"])
        out.append({"train images": images, "best peer": best["system"], "peer mAP50-95": best["mAP50-95"],
                    "ours mAP50-95": ours[0]["mAP50-95"],
                    "ours - best peer": ours[0]["mAP50-95"] - best["mAP50-95"],
                    "ours / best peer": (ours[0]["mAP50-95"] / best["mAP50-95"]) if best["mAP50-95"] else None,
                    "target (+0.10) met": ours[0]["mAP50-95"] >= best["mAP50-95"] + 0.10,
                    "ours mAP50": ours[0]["mAP50"], "ours mAP50 > 0": ours[0]["mAP50"] > 0,
                    "peer wall s": best["train wall s"],
                    "ours wall s": ours[0]["train wall s"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20, help="peer epochs (the budget, unless --budget-seconds)")
    parser.add_argument("--our-epochs", type=int, default=0, help="ours' train.epochs; 0 = --epochs")
    parser.add_argument("--budget-seconds", type=float, default=0,
                        help="wall-clock budget for every system (peer: time=); 0 = the fastest peer's wall-clock")
    parser.add_argument("--train-images", type=int, default=240)
    parser.add_argument("--validation-images", type=int, default=60)
    parser.add_argument("--size", type=int, default=160, help="canvas and model input size (px)")
    parser.add_argument("--batch", type=int, default=16, help="peer batch size")
    parser.add_argument("--peers", nargs="*", default=["yolov8n", "yolo11n"])
    parser.add_argument("--curve", nargs="*", default=["25", "50", "100", "all"], help="training-set sizes")
    parser.add_argument("--curve-peers", nargs="*", default=None, help="peers in the curve (default: --peers)")
    parser.add_argument("--latency-sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument("--latency-images", type=int, default=200)
    parser.add_argument("--latency-train-seconds", type=float, default=60,
                        help="each side's short training at a latency size (weights set how many boxes reach NMS)")
    parser.add_argument("--only", choices=["peer", "ours", "latency", "curve"])
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "modeldojo-bench" / "detection"),
                        help="datasets, runs and exports (kept: stages reuse each other's data)")
    parser.add_argument("--peer-venv", default=str(PEER_VENV))
    parser.add_argument("--out", default="bench-detection.json")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)

    out = Path(args.out)
    previous = json.loads(out.read_text(encoding="utf-8")) if out.exists() and args.only else {}
    results = {**previous, "command": " ".join(sys.argv), "settings": vars(args)}

    def save() -> None:
        out.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")

    stages = [args.only] if args.only else ["peer", "ours", "curve", "latency"]
    if "peer" in stages or "ours" in stages:
        main_rows = [row for row in previous.get("main", []) if row["system"] != "ours" or "ours" not in stages]
        if "peer" in stages:
            main_rows = [row for row in main_rows if row["system"] == "ours"]
        print(f"\n== {args.train_images} training images, {args.validation_images} validation, {args.size} px ==")
        main_rows += compare(args, args.train_images, args.peers if "peer" in stages else [], "ours" in stages,
                             previous=main_rows)
        results["main"] = main_rows
        results["gap"] = gaps(main_rows)
        save()
    if "curve" in stages:
        curve_rows = []
        for size in args.curve:
            images = args.train_images if size == "all" else int(size)
            reused = [row for row in results.get("main", []) if row["train images"] == images
                      and "mAP50-95" in row] if not args.only else []
            print(f"\n== curve: {images} training images ==")
            curve_rows += reused or compare(args, images, args.curve_peers if args.curve_peers is not None
                                            else args.peers, True)
            results["curve"] = curve_rows
            save()
        results["curve_gap"] = gaps(curve_rows)
        save()
    if "latency" in stages:
        print(f"\n== latency: ONNX Runtime, batch 1, {THREADS} threads, {args.latency_images} images ==")
        results["latency"] = latency(args, args.peers, True)
        save()

    for key, title in [("main", "main"), ("gap", "ours minus best peer (pycocotools mAP50-95)"),
                       ("curve", "small-data curve"), ("curve_gap", "curve: ours minus best peer"),
                       ("latency", "ONNX latency")]:
        if results.get(key):
            print(f"\n-- {title} --")
            show(results[key])
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
