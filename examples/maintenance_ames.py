"""The maintenance loop end to end on Ames: serve → log → monitor → retrain → promote → roll back.

    .venv/bin/python examples/maintenance_ames.py                 # data/ames.csv (make demo writes it)
    .venv/bin/python examples/maintenance_ames.py --rows 600      # a quicker cut

1. The champion learns from houses built before 2000 (`ames-old.csv`) and is registered as `prices` version 1.
2. `dojo serve models:/prices@champion --log-predictions` answers requests for houses built from 2000 on — the
   world has moved — and logs them, personal data masked.
3. `dojo monitor --logs` finds the drift (Year_Built and what comes with new houses) and exits 7.
4. `dojo retrain prices --data ames-new.csv` trains a challenger on old + new houses and promotes it only if a
   paired bootstrap interval on held-out rows (the champion's test split and the newest new houses) says better.
5. `dojo models rollback prices` puts version 1 back.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

import modeldojo as dojo
from modeldojo.cli import main as dojo_cli

ROOT = Path(__file__).resolve().parent.parent


def wait_until_ready(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "data" / "ames.csv"))
    parser.add_argument("--rows", type=int, default=0, help="use a random sample of this many houses (0 = all)")
    parser.add_argument("--work", default=None, help="folder for the data cuts, runs and logs (default: temporary)")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="dojo-maintenance-"))
    work.mkdir(parents=True, exist_ok=True)
    runs, logs = work / "runs", work / "logs"
    houses = pd.read_csv(args.data)
    if args.rows:
        houses = houses.sample(args.rows, random_state=0)
    houses = houses.sort_values("Year_Built", kind="stable")  # the newest window is the newest houses
    houses[houses["Year_Built"] < 2000].to_csv(work / "ames-old.csv", index=False)
    houses[houses["Year_Built"] >= 2000].to_csv(work / "ames-new.csv", index=False)

    print("1. champion on houses built before 2000", file=sys.stderr)
    dojo.train(str(work / "ames-old.csv"), target="Sale_Price", runs_dir=str(runs), name="prices-v1",
               overrides={"data.label_error_check": False})
    dojo_cli(["models", "register", "prices-v1", "--name", "prices", "--runs-dir", str(runs)])

    print("2. serving the champion, logging every request", file=sys.stderr)
    server = subprocess.Popen([sys.executable, "-m", "modeldojo.cli", "serve", "models:/prices@champion",
                               "--runs-dir", str(runs), "--port", str(args.port), "--log-predictions", str(logs)])
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_until_ready(url)
        new = pd.read_csv(work / "ames-new.csv").drop(columns=["Sale_Price"])
        for start in range(0, len(new), 100):
            rows = new.iloc[start:start + 100].astype(object).where(new.iloc[start:start + 100].notna(), None)
            httpx.post(url + "/predict", json={"inputs": rows.to_dict("records")}, timeout=60).raise_for_status()
    finally:
        server.terminate()
        server.wait(30)

    print("3. monitoring the logged requests against the training rows", file=sys.stderr)
    code = dojo_cli(["monitor", "prices-v1", "--runs-dir", str(runs), "--logs", str(logs)])
    print(f"   dojo monitor exit code: {code} (7 = drift)", file=sys.stderr)

    print("4. retraining on old + new houses; promoted only if better for sure", file=sys.stderr)
    decision = dojo.retrain("prices", str(work / "ames-new.csv"), runs_dir=runs)
    print(f"   promoted: {decision['promoted']} — {decision['reason']}", file=sys.stderr)
    dojo_cli(["models", "list", "prices", "--runs-dir", str(runs)])

    if decision["promoted"]:
        print("5. rolling back to version 1", file=sys.stderr)
        dojo_cli(["models", "rollback", "prices", "--runs-dir", str(runs)])
    print(f"everything is under {work}", file=sys.stderr)
    return 0 if code == 7 else 1


if __name__ == "__main__":
    raise SystemExit(main())
