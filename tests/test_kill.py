"""SIGKILL at any moment of `dojo train`: a run is never 'completed' without a whole, loadable model."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modeldojo as dojo


@pytest.mark.parametrize("delay", [2.0, 3.0, 4.0, 5.5])  # spans fit, refit, evaluation, save
def test_sigkill_never_leaves_a_completed_run_without_its_model(tmp_path, delay):
    rng = np.random.default_rng(0)
    rows = 20000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(10)})
    frame["y"] = frame.sum(axis=1) + rng.normal(size=rows)
    data = tmp_path / "big.csv"
    frame.to_csv(data, index=False)
    dojo_cli = Path(sys.executable).with_name("dojo")
    process = subprocess.Popen([dojo_cli, "train", str(data), "--target", "y", "--name", "k", "--no-tracking",
                                "--runs-dir", str(tmp_path / "runs"), "-q"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = tmp_path / "runs" / "k"
    model = run / "model"
    if model.exists():  # present means whole: the folder appears only by an atomic rename
        assert dojo.load(model).predict(frame.head(3)).shape == (3,)
    if (run / "status.json").exists() and json.loads((run / "status.json").read_text())["status"] == "completed":
        assert (model / "meta.json").is_file()
