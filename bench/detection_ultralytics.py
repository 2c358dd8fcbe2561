"""The ultralytics side of bench/detection.py. Runs ONLY inside the peer's own virtual environment (torch 2.14.1 +
torchvision 0.29.1 + ultralytics, created by bench/detection.py), never in the project's: it imports no modeldojo.

    VENV/bin/python bench/detection_ultralytics.py train --model yolov8n.yaml --data peer.yaml --imgsz 160 \
        --epochs 20 --project DIR --name yolov8n --predict VAL/images --out result.json
    VENV/bin/python bench/detection_ultralytics.py export --weights DIR/yolov8n/weights/best.pt --imgsz 320 \
        --out export.json

`train` writes {wall_s, epochs_run, best, val_mAP50-95, val_mAP50, predictions: [{image, boxes, scores,
class_ids}]} (boxes xyxy in original-image pixels, class ids index the data yaml's names); `export` writes {onnx}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing can be downloaded here: fail fast, never hang on a fetch


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)


def train(args) -> dict:
    from ultralytics import YOLO

    model = YOLO(args.model)  # a YAML: random initialisation (no weights can be downloaded here)
    options = dict(data=args.data, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, device="cpu", workers=0,
                   pretrained=False, project=args.project, name=args.name, exist_ok=True, plots=False, seed=0,
                   deterministic=True, amp=False, verbose=False)
    if args.time_s:
        options["time"] = args.time_s / 3600  # hours; ultralytics re-plans the epochs to fit (overrides epochs)
    started = time.perf_counter()
    model.train(**options)
    wall = time.perf_counter() - started
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
    import torch
    import ultralytics

    result = {"versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__}, "wall_s": wall,
              "epochs_run": int(trainer.epoch) + 1, "epochs_planned": int(trainer.epochs), "best": str(best.resolve())}

    fitted = YOLO(str(best))
    metrics = fitted.val(data=args.data, imgsz=args.imgsz, batch=args.batch, conf=0.001, iou=0.7, device="cpu",
                         workers=0, plots=False, verbose=False, project=args.project, name=f"{args.name}-val",
                         exist_ok=True)
    result["val_mAP50-95"], result["val_mAP50"] = float(metrics.box.map), float(metrics.box.map50)

    if args.predict:
        paths = sorted(str(path.resolve()) for path in Path(args.predict).iterdir()
                       if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
        predictions = []
        # conf 0.001 / iou 0.7 / max_det 300: the settings of ultralytics' own val()
        for item in fitted.predict(source=paths, imgsz=args.imgsz, conf=0.001, iou=0.7, max_det=300, device="cpu",
                                   verbose=False, stream=True):
            boxes = item.boxes
            predictions.append({"image": str(Path(item.path).resolve()), "boxes": boxes.xyxy.cpu().numpy().tolist(),
                                "scores": boxes.conf.cpu().numpy().tolist(),
                                "class_ids": boxes.cls.cpu().numpy().astype(int).tolist()})
        result["predictions"] = predictions
    return result


def export(args) -> dict:
    from ultralytics import YOLO

    model = YOLO(args.weights)
    options = dict(format="onnx", imgsz=args.imgsz, batch=1, dynamic=False, device="cpu", simplify=True)
    try:  # NMS inside the graph (as ours has): newer ultralytics only
        path = model.export(**options, nms=True)
        nms = True
    except Exception as error:  # noqa: BLE001 - an older release rejects the argument; time the raw graph then
        print(f"export with nms=True failed ({error!r}); exporting without NMS", file=sys.stderr)
        path = model.export(**options)
        nms = False
    return {"onnx": str(Path(path).resolve()), "nms": nms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    trainer = commands.add_parser("train")
    _common(trainer)
    trainer.add_argument("--model", required=True, help="yolov8n.yaml, yolo11n.yaml, …")
    trainer.add_argument("--data", required=True)
    trainer.add_argument("--epochs", type=int, default=20)
    trainer.add_argument("--time-s", type=float, default=0, help="wall-clock budget (ultralytics' time=)")
    trainer.add_argument("--batch", type=int, default=16)
    trainer.add_argument("--project", required=True)
    trainer.add_argument("--name", required=True)
    trainer.add_argument("--predict", help="folder of images to predict (ultralytics val settings)")
    exporter = commands.add_parser("export")
    _common(exporter)
    exporter.add_argument("--weights", required=True)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    result = train(args) if args.command == "train" else export(args)
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
