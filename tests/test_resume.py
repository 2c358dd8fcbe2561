"""Exact resume: SIGKILL a training run, resume it, and get bitwise the weights of an uninterrupted run."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import modeldojo as dojo
from modeldojo.training import checkpoint as checkpoints

from text_helpers import reviews

DOJO = Path(sys.executable).with_name("dojo")
SETTINGS = ["train.epochs=30", "train.checkpoint_every=5", "train.eval_every=20", "train.learning_rate=0.001",
            "train.batch_size=8", "train.threads=1"]


def command(data, runs, name, model):
    return [str(DOJO), "train", str(data), "--target", "stars", "--task", "text", "--name", name, "--no-tracking",
            "--runs-dir", str(runs), "-q", f"model.name={model}", *SETTINGS]


def weights(run_dir):
    return load_file(str(run_dir / "model" / "model" / "model.safetensors"))


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    frame, _, overrides = reviews("multiclass")
    data = tmp_path / "reviews.csv"
    frame.to_csv(data, index=False)
    runs = tmp_path / "runs"
    subprocess.run(command(data, runs, "straight", overrides["model.name"]), check=True, timeout=300)

    victim = subprocess.Popen(command(data, runs, "killed", overrides["model.name"]))
    checkpoint_dir = runs / "killed" / "checkpoints"
    deadline = time.time() + 120
    # Kill in the third epoch (16 steps per epoch): resuming must rebuild that epoch's own batch order.
    while time.time() < deadline and not any(int(p.name[5:]) >= 40 for p in checkpoints.complete(checkpoint_dir)):
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    status = json.loads((runs / "killed" / "status.json").read_text())["status"]
    assert status == "running", "the run finished before the kill: make it longer"
    killed_at = checkpoints.latest(checkpoint_dir).name
    assert not (runs / "killed" / "model").exists()

    subprocess.run(command(data, runs, "killed", overrides["model.name"]), check=True, timeout=300)
    resumed = json.loads((runs / "killed" / "metrics.json").read_text())["fit"]
    assert resumed["resumed_from_step"] == int(killed_at.split("-")[1])
    straight, after_resume = weights(runs / "straight"), weights(runs / "killed")
    assert straight.keys() == after_resume.keys()
    different = [k for k in straight if not torch.equal(straight[k], after_resume[k])]
    assert not different, f"resumed weights differ in {different[:5]}"

    # Stop on request (SIGTERM: `dojo app`'s Stop button): a checkpoint of the very step, status `stopped`,
    # exit code 8; resuming from that off-schedule step gives the same weights too.
    stopped = subprocess.Popen(command(data, runs, "stopped", overrides["model.name"]))
    events = runs / "stopped" / "events.jsonl"
    while time.time() < deadline + 120 and not (events.is_file() and '"train_loss"' in events.read_text()
                                                 and events.read_text().count('"train_loss"') >= 23):
        time.sleep(0.01)
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(timeout=120) == 8
    status = json.loads((runs / "stopped" / "status.json").read_text())
    assert status["status"] == "stopped" and not (runs / "stopped" / "model").exists()
    stopped_at = int(checkpoints.latest(runs / "stopped" / "checkpoints").name.split("-")[1])
    assert stopped_at % 5 != 0 or stopped_at > 23  # a step of its own, not only the every-5 schedule
    assert '"event": "stopped"' in events.read_text()
    subprocess.run(command(data, runs, "stopped", overrides["model.name"]), check=True, timeout=300)
    assert json.loads((runs / "stopped" / "metrics.json").read_text())["fit"]["resumed_from_step"] == stopped_at
    after_stop = weights(runs / "stopped")
    assert not [k for k in straight if not torch.equal(straight[k], after_stop[k])]


def test_interrupted_checkpoint_write_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    frame, target, overrides = reviews("binary")
    real_save = torch.save
    calls = {"n": 0}

    def crash_on_third_checkpoint(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed while writing a checkpoint")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_on_third_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        dojo.train(frame, target=target, runs_dir=str(tmp_path), tracking=False, name="crash",
                   overrides={**overrides, "train.checkpoint_every": 3, "train.eval_every": 100})
    directory = tmp_path / "crash" / "checkpoints"
    assert sorted(p.name for p in directory.iterdir()) == ["step-00000003", "step-00000006"]  # no half folder
    monkeypatch.setattr(torch, "save", real_save)  # the resume below proves step 6 is whole
    result = dojo.train(frame, target=target, runs_dir=str(tmp_path), tracking=False, name="crash",
                        overrides={**overrides, "train.checkpoint_every": 3, "train.eval_every": 100})
    assert result.info["resumed_from_step"] == 6 and result.run.status()["status"] == "completed"


def test_leftover_temp_folder_is_ignored(tmp_path):
    (tmp_path / ".tmp-half").mkdir()
    (tmp_path / ".tmp-half" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "step-00000004").mkdir()  # renamed folders are whole only when state.json is there
    assert checkpoints.latest(tmp_path) is None
