"""Which settings make the tiny text example learn reliably (seeds 0-2)? A developer probe."""
import sys
import tempfile
from pathlib import Path

import modeldojo as dojo
from modeldojo.tasks.text import TextTask, tiny

kind = sys.argv[1] if len(sys.argv) > 1 else "multiclass"
for width, dropout, epochs, lr in [(32, 0.0, 10, 1e-3), (64, None, 10, 1e-3), (64, 0.0, 10, 1e-3), (32, 0.0, 10, 3e-3)]:
    scores = []
    for seed in range(3):
        frame, target, overrides = TextTask.example(kind, seed=seed)
        words = sorted(set(" ".join(frame["review"]).replace(",", " ").split()) | {","})
        folder = tiny.build(Path(tempfile.mkdtemp()) / "m", words, width=width)
        settings = {**overrides, "model.name": str(folder), "train.epochs": epochs, "train.learning_rate": lr,
                    "train.seed": seed, "train.dropout": dropout}
        result = dojo.train(frame, target=target, runs_dir=tempfile.mkdtemp(), tracking=False, overrides=settings)
        scores.append(round(result.metrics["accuracy"], 3))
    print(width, dropout, epochs, lr, scores, flush=True)
