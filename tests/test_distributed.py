"""Two processes under torchrun (gloo on CPU): the same command trains with DDP, process 0 writes the run."""
import json
import subprocess
import sys
from pathlib import Path

from text_helpers import reviews


def test_torchrun_two_processes(tmp_path):
    frame, target, overrides = reviews("binary")
    data = tmp_path / "reviews.csv"
    frame.to_csv(data, index=False)
    torchrun = Path(sys.executable).with_name("torchrun")
    from serving_helpers import free_port

    # A port of its own: the default 29500 can still be held by an earlier torchrun of the suite.
    command = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "modeldojo.cli",
               "train", str(data), "--target", target,
               "--name", "ddp", "--no-tracking", "--runs-dir", str(tmp_path / "runs"), "--lr", "1e-3", "-q", "--json",
               f"model.name={overrides['model.name']}", "train.epochs=20"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # only process 0 prints
    assert result["fit"]["steps"] == 80  # 8 step batches per epoch, shared by 2 processes, 20 epochs
    assert result["metrics"]["accuracy"] >= 0.9
    assert json.loads((tmp_path / "runs" / "ddp" / "status.json").read_text())["status"] == "completed"
