"""The chat task (LoRA, the tiny Llama) under `torchrun --nproc_per_node 2` on CPU (gloo): DDP and FSDP2
(`train.distributed=fsdp`) each complete a run that loads and answers, train to the same adapter, and an FSDP
run resumes from a checkpoint (written gathered, in the single-process format)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import modeldojo as dojo
from modeldojo.tasks.chat.task import ChatTask

TORCHRUN = Path(sys.executable).with_name("torchrun")
# 33 training conversations in steps of 4 x 2 micro-batches: 5 step batches an epoch, 4 shared by the two
# processes (2 steps each), 3 epochs. The short step batch (one conversation, one micro-batch) lands among the
# 4 in some epoch: FSDP must still run as many passes on both processes.
SETTINGS = ["train.epochs=3", "train.batch_size=4", "train.gradient_accumulation=2", "train.checkpoint_every=2",
            "train.keep_checkpoints=10", "evaluate.report=false", "evaluate.baselines=false"]
STEPS = 6
ADAPTER = Path("model") / "adapter" / "adapter_model.safetensors"


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory):
    frame, _, overrides = ChatTask.example("generation")
    folder = tmp_path_factory.mktemp("chat")
    frame.to_json(folder / "faq.jsonl", orient="records", lines=True)
    overrides = [f"{key}={value}" for key, value in overrides.items()
                 if key not in ("train.epochs", "train.batch_size")]
    return folder, frame, overrides


def torchrun(data, runs, name, overrides, mode):
    from serving_helpers import free_port

    # A port of its own: the default 29500 can still be held by an earlier torchrun of the suite.
    command = [str(TORCHRUN), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "modeldojo.cli",
               "train", str(data), "--task", "chat",
               "--name", name, "--runs-dir", str(runs), "--no-tracking", "-q", "--json", *overrides, *SETTINGS,
               f"train.distributed={mode}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # only process 0 prints


def check_run(run, frame):
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    answers = dojo.load(run / "model").predict(frame.head(3))
    assert answers.shape == (3,)


@pytest.fixture(scope="module")
def ddp_run(chat_data):
    folder, frame, overrides = chat_data
    result = torchrun(folder / "faq.jsonl", folder / "runs", "ddp", overrides, "ddp")
    return folder / "runs" / "ddp", result


def test_chat_lora_ddp_two_processes(chat_data, ddp_run):
    run, result = ddp_run
    assert result["fit"]["steps"] == STEPS
    assert result["fit"]["strategy"] == "lora"
    check_run(run, chat_data[1])


def test_chat_lora_fsdp_two_processes_and_resume(chat_data, ddp_run):
    folder, frame, overrides = chat_data
    runs = folder / "runs"
    result = torchrun(folder / "faq.jsonl", runs, "fsdp", overrides, "fsdp")
    assert result["fit"]["steps"] == STEPS
    check_run(runs / "fsdp", frame)
    # Every process trained on its own batches, FSDP gathering the weights and reduce-scattering the gradients:
    # the same adapter as DDP's (to rounding: the reduction order of the gradients may differ).
    fsdp, ddp = load_file(str(runs / "fsdp" / ADAPTER)), load_file(str(ddp_run[0] / ADAPTER))
    assert fsdp.keys() == ddp.keys() and fsdp
    for key in fsdp:
        torch.testing.assert_close(fsdp[key], ddp[key], rtol=1e-5, atol=1e-6)
    # The checkpoint FSDP wrote (gathered on process 0) is the single-process format: a run resumed from step 2
    # of it, under FSDP again, ends with the same adapter, bit for bit.
    assert sorted(load_file(str(runs / "fsdp" / "checkpoints" / "step-00000002" / "model.safetensors"))) == \
        sorted(name for name in load_file(str(runs / "fsdp" / "checkpoints" / "step-00000006" / "model.safetensors")))
    resumed = runs / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(runs / "fsdp" / "checkpoints" / "step-00000002", resumed / "checkpoints" / "step-00000002")
    status = json.loads((runs / "fsdp" / "status.json").read_text())
    (resumed / "status.json").write_text(json.dumps({**status, "status": "running"}))  # as if killed
    result = torchrun(folder / "faq.jsonl", runs, "resumed", overrides, "fsdp")
    assert result["fit"]["resumed_from_step"] == 2 and result["fit"]["steps"] == STEPS
    check_run(resumed, frame)
    again = load_file(str(resumed / ADAPTER))
    for key in fsdp:
        assert torch.equal(again[key], fsdp[key]), key  # each process resumed its own random state too
