"""Checks of the CUDA path, for a machine with an NVIDIA GPU (not part of CI):

1. a text run on the GPU picks bf16 autocast and fused AdamW and learns;
2. auto batch size: an out-of-memory micro-batch is halved (accumulation doubled) until it fits,
   and the result equals a run that used the smaller micro-batch from the start.

    PYTHONPATH=src python scripts/gpu_check.py
"""
from __future__ import annotations

import tempfile
import time

import torch

import modeldojo as dojo
from modeldojo.config import TrainConfig
from modeldojo.events import EventBus
from modeldojo.tasks.text import TextTask
from modeldojo.training.loop import autocast_dtype, fit


class BigTrainee:
    """Random tokens through a wide BERT: big enough that 1024 x 512 tokens cannot fit in one go."""

    monitor = "loss"

    def __init__(self, examples: int, length: int) -> None:
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(0)
        config = BertConfig(vocab_size=1000, hidden_size=1024, num_hidden_layers=12, num_attention_heads=16,
                            intermediate_size=4096, max_position_embeddings=length, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
        self.model = BertForSequenceClassification(config)
        generator = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(0, 1000, (examples, length), generator=generator)
        self.labels = torch.randint(0, 2, (examples,), generator=generator)

    def step_batches(self, epoch):
        return [list(range(i, i + 1024)) for i in range(0, len(self.tokens), 1024)]

    def collate(self, indices, device):
        return {"input_ids": self.tokens[indices].to(device), "labels": self.labels[indices].to(device)}

    def loss(self, model, batch):
        return model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

    def evaluate(self, model):
        return {}


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
    config = TrainConfig()
    print("autocast dtype chosen:", autocast_dtype(config, torch.device("cuda")))

    frame, target, overrides = TextTask.example("multiclass")
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        result = dojo.train(frame, target=target, runs_dir=runs, tracking=False, overrides=overrides)
        print(f"text run on GPU: accuracy {result.metrics['accuracy']:.3f}, {result.info['steps']} steps, "
              f"{time.perf_counter() - started:.1f} s")

    settings = TrainConfig(epochs=1, batch_size=1024, learning_rate=1e-4, warmup=0.0, precision="bf16")
    trainee = BigTrainee(examples=2048, length=512)
    started = time.perf_counter()
    bus = EventBus()
    bus.subscribe("stage", lambda name, detail="", **_: print(f"  {name}: {detail}"))
    result_split = fit(trainee, settings, bus, None)
    print(f"OOM split: finished in {time.perf_counter() - started:.1f} s, peak memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"  micro-batches per step after OOM handling: {result_split.micro_batches_per_step}")
    split_weights = {k: v.detach().float().cpu() for k, v in trainee.model.state_dict().items()}
    del trainee
    torch.cuda.empty_cache()
    # The split the loop settled on, used from the start: the same effective batch, so nearly the same weights.
    second = BigTrainee(examples=2048, length=512)
    fit(second, TrainConfig(epochs=1, batch_size=1024, learning_rate=1e-4, warmup=0.0, precision="bf16",
                            gradient_accumulation=result_split.micro_batches_per_step), EventBus(), None)
    difference = max(float((split_weights[k] - v.detach().float().cpu()).abs().max())
                     for k, v in second.model.state_dict().items())
    print(f"max |weight difference| vs that split from the start: {difference:.2e}")


if __name__ == "__main__":
    main()
