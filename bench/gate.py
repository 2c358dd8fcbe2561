"""The retraining gate (`dojo retrain`): how often it promotes a challenger that is worse, equal, or better.

Per seed, a champion (LightGBM defaults) learns from 300 rows of a synthetic binary task with 10 % label noise and
is registered; then three retrains on new rows from the same process:
- worse: 600 new rows whose labels are shuffled (they carry no signal, so the challenger learns noise);
- equal: 30 new rows (10 % more data: no real difference);
- better: 3,000 new clean rows (ten times the data).
Each is a fresh copy of the champion's registry (so one retrain does not change the next one's champion). Both
models are scored on the same held-out rows (the champion's test split + the newest 20 % of the new rows), paired
bootstrap interval of the accuracy difference, margin 0, recall tolerance 0.05; export parity skipped
(`export=False`) to time the gate alone.

Targets (issue 17): wrong promotions (worse or equal) ≤ 5 %, correct promotions (better) ≥ 80 %.

    nice -n 10 .venv/bin/python bench/gate.py --seeds 20 --out bench-gate.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import modeldojo as dojo
from modeldojo import versions


def table(rows: int, seed: int, noise: float = 0.1, shuffled: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    label = np.where(x[:, 0] + 0.6 * x[:, 1] - 0.4 * x[:, 2] * x[:, 3] > 0, "yes", "no")
    flip = rng.random(rows) < noise
    label[flip] = np.where(label[flip] == "yes", "no", "yes")
    if shuffled:
        label = rng.permutation(label)
    return pd.DataFrame({**{f"x{i}": x[:, i] for i in range(6)}, "label": label})


SCENARIOS = {"worse": dict(rows=600, shuffled=True), "equal": dict(rows=30), "better": dict(rows=3000, noise=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", default="bench-gate.json")
    args = parser.parse_args()
    outcomes = {name: [] for name in SCENARIOS}
    seconds = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as folder:
            base = Path(folder) / "base"
            table(300, seed).to_csv(Path(folder) / "old.csv", index=False)
            dojo.train(str(Path(folder) / "old.csv"), target="label", runs_dir=str(base), name="champion",
                       tracking=True, overrides={"data.label_error_check": False})
            versions.register("champion", "gate", runs_dir=base)
            for name, settings in SCENARIOS.items():
                runs = Path(folder) / name
                shutil.copytree(base, runs)  # the registry's SQLite file and the runs travel together
                # the run folder path is stored in the registry: point it at this copy
                client = versions.client(runs)
                client.set_model_version_tag("gate", "1", versions.RUN_DIR, str((runs / "champion").resolve()))
                new = table(settings["rows"], 1000 + seed, settings.get("noise", 0.1), settings.get("shuffled", False))
                new.to_csv(Path(folder) / f"{name}.csv", index=False)
                started = time.perf_counter()
                decision = dojo.retrain("gate", str(Path(folder) / f"{name}.csv"), runs_dir=runs, export=False)
                seconds.append(time.perf_counter() - started)
                outcomes[name].append({"promoted": decision["promoted"], "difference": decision.get("difference"),
                                       "interval": decision.get("interval")})
        print(f"seed {seed}: " + ", ".join(f"{n} {'promoted' if o[-1]['promoted'] else 'kept'}"
                                          for n, o in outcomes.items()), flush=True)
    summary = {name: {"promoted": float(np.mean([o["promoted"] for o in rows])),
                      "mean_difference": float(np.mean([o["difference"] for o in rows]))}
               for name, rows in outcomes.items()}
    summary["median_retrain_seconds"] = float(np.median(seconds))
    print(json.dumps(summary, indent=2))
    Path(args.out).write_text(json.dumps({"summary": summary, "outcomes": outcomes}, indent=2))


if __name__ == "__main__":
    main()
