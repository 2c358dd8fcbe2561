"""Exact resume of a chat run: SIGKILL `dojo train` after its first checkpoint, rerun the same command (resume is
automatic), and the trained weights — LoRA adapter, ReFT interventions — are bitwise an uninterrupted run's."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeldojo.tasks.chat.task import ChatTask
from modeldojo.training import checkpoint as checkpoints

DOJO = Path(sys.executable).with_name("dojo")
# 33 training conversations in steps of 8: 5 steps an epoch (the last one of a single conversation), 40 steps.
# LoRA keeps its adapter dropout (0.05): the resumed run must restore the random state to draw the same masks.
SETTINGS = ["train.epochs=8", "train.checkpoint_every=1", "train.keep_checkpoints=2", "train.threads=1",
            "evaluate.report=false", "evaluate.baselines=false"]
WEIGHTS = {"lora": Path("adapter") / "adapter_model.safetensors", "reft": Path("reft") / "interventions.safetensors"}


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory):
    frame, _, overrides = ChatTask.example("generation")
    path = tmp_path_factory.mktemp("chat") / "faq.jsonl"
    frame.to_json(path, orient="records", lines=True)
    return path, [f"{key}={value}" for key, value in overrides.items() if key != "train.epochs"]


def command(data, overrides, runs, name, strategy):
    return [str(DOJO), "train", str(data), "--task", "chat", "--name", name, "--runs-dir", str(runs), "--no-tracking",
            "-q", *overrides, f"finetune.strategy={strategy}", *SETTINGS]


@pytest.mark.parametrize("strategy", ["lora", "reft"])
def test_chat_sigkill_then_resume_is_bitwise_identical(tmp_path, chat_data, strategy):
    data, overrides = chat_data
    runs = tmp_path / "runs"
    subprocess.run(command(data, overrides, runs, "straight", strategy), check=True, timeout=300,
                   stdout=subprocess.DEVNULL)

    victim = subprocess.Popen(command(data, overrides, runs, "killed", strategy), stdout=subprocess.DEVNULL)
    checkpoint_dir = runs / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not checkpoints.complete(checkpoint_dir) and victim.poll() is None:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    status = json.loads((runs / "killed" / "status.json").read_text())["status"]
    assert status == "running", "the run finished before the kill: make it longer"
    assert not (runs / "killed" / "model").exists()
    killed_at = int(checkpoints.latest(checkpoint_dir).name.split("-")[1])
    assert killed_at < 40

    subprocess.run(command(data, overrides, runs, "killed", strategy), check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    fit = json.loads((runs / "killed" / "metrics.json").read_text())["fit"]
    assert fit["resumed_from_step"] == killed_at
    assert fit["steps"] == 40
    straight = load_file(str(runs / "straight" / "model" / WEIGHTS[strategy]))
    resumed = load_file(str(runs / "killed" / "model" / WEIGHTS[strategy]))
    assert straight.keys() == resumed.keys() and straight
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different, f"resumed {strategy} weights differ in {different[:5]}"
