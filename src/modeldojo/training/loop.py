"""The training loop every neural task shares. Tasks supply a `Trainee`; the loop supplies
optimisation, schedules, accumulation, clipping, mixed precision, evaluation, early stopping,
checkpoints and exact resume. Side effects go out as events (progress, metrics, checkpoints).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .. import events as ev
from ..config import TrainConfig
from ..errors import StopRequested, TrainingError
from ..evaluation.metrics import LOWER_IS_BETTER
from . import checkpoint as checkpoints
from . import stopping
from .distributed import Distributed
from .dropout import use_fast_dropout
from .recompute import enable_activation_checkpointing, recompute_adapter_dropout
from .optim import make_optimizer, make_scheduler


class Trainee(Protocol):
    model: torch.nn.Module
    monitor: str                    # default validation metric to watch

    def step_batches(self, epoch: int) -> list[list[int]]: ...     # example indices per optimizer step
    def collate(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]: ...
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]: ...  # validation metrics incl. "loss"
    # Optional: weight(indices) → what the loss of those examples is a mean over (default: the examples; a
    # token-level loss says its tokens), so a step split into micro-batches gets the full batch's gradient.


@dataclass
class LoopResult:
    steps: int
    epochs_completed: int
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    examples: int = 0
    train_seconds: float = 0.0
    resumed_from: int | None = None
    micro_batches_per_step: int = 1
    out_of_time: bool = False  # train.time_limit ended training

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.train_seconds if self.train_seconds else 0.0

    def summary(self) -> dict[str, Any]:
        """The facts a task records with its run (history included; api writes it to history.json)."""
        return {"steps": self.steps, "epochs_completed": self.epochs_completed, "best_step": self.best_step,
                "stopped_early": self.stopped_early, "examples_per_second": round(self.examples_per_second, 2),
                "train_seconds": round(self.train_seconds, 2), "resumed_from_step": self.resumed_from,
                "stopped_by_time_limit": self.out_of_time,
                "history": self.history}


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 / AMX (oneDNN): bf16 matmuls run ~2x fp32 there; elsewhere bf16 would be emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "fp32":
        return None
    if device.type != "cuda":
        return torch.bfloat16 if config.precision == "bf16" or (config.precision == "auto" and cpu_supports_bf16()) \
            else None
    if config.precision == "fp16" or (config.precision == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def fit(trainee: Trainee, config: TrainConfig, bus: ev.EventBus, checkpoint_dir: Path | None,
        dist: Distributed | None = None) -> LoopResult:
    """Train `trainee`; `train.threads` (when set) is torch's CPU thread count for the run, restored after."""
    previous = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _fit(trainee, config, bus, checkpoint_dir, dist)
    finally:
        torch.set_num_threads(previous)


def _fit(trainee: Trainee, config: TrainConfig, bus: ev.EventBus, checkpoint_dir: Path | None,
         dist: Distributed | None) -> LoopResult:
    dist = dist or Distributed.from_environment(config.distributed)
    device, model = dist.device, trainee.model.to(dist.device)
    if device.type == "cpu":
        use_fast_dropout(model)  # same dropout, a cheaper mask: see training/dropout.py
    recompute_adapter_dropout(model)  # LoRA: the dropped copies of each adapter's input are not kept
    if config.activation_checkpointing:
        enable_activation_checkpointing(model)
    per_epoch = len(dist.shard(trainee.step_batches(0)))
    total = per_epoch * config.epochs if not config.max_steps else min(config.max_steps, per_epoch * config.epochs)
    wrapped = dist.wrap(model)  # before the optimizer: FSDP replaces the parameters by their shards
    optimizer, dtype = make_optimizer(model, config), autocast_dtype(config, device)
    scheduler = make_scheduler(optimizer, config, total)
    scaler = dist.grad_scaler() if dtype == torch.float16 else None
    monitor = trainee.monitor if config.monitor == "auto" else config.monitor
    lower = monitor in LOWER_IS_BETTER or monitor.endswith("loss")
    better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
    state = {"step": 0, "epoch": 0, "position": 0, "best_metric": None, "best_step": None, "bad_evals": 0,
             "history": [], "stopped_early": False, "split": 1}
    best_weights: dict[str, torch.Tensor] | None = None
    result = LoopResult(0, 0, None, None, False)
    found = checkpoints.latest(checkpoint_dir) if checkpoint_dir and config.resume else None
    if found is not None:
        loaded_model, loaded_optimizer = dist.loadable(model, optimizer)  # FSDP: scattered into the shards
        state = checkpoints.load(found, model=loaded_model, optimizer=loaded_optimizer, scheduler=scheduler,
                                 scaler=scaler)
        dist.restore_random_states(state.get("process_rng"))  # several processes: each its own dropout masks
        result.resumed_from = state["step"]
        bus.emit(ev.STAGE, name="resume", detail=f"from {found.name} (epoch {state['epoch'] + 1}, "
                                                 f"step {state['step']})")

    def save_checkpoint() -> None:
        if checkpoint_dir is None:
            return
        saved_model, saved_optimizer = dist.gathered(model, optimizer)  # FSDP: a collective, every process
        if dist.world > 1:
            state["process_rng"] = dist.random_states()  # a collective too
        if dist.is_main:
            checkpoints.save(checkpoint_dir, model=saved_model, optimizer=saved_optimizer, scheduler=scheduler,
                             scaler=scaler, state=state)
            protect = {state["best_step"]} if state["best_step"] is not None else set()
            checkpoints.prune(checkpoint_dir, config.keep_checkpoints, protect)

    def run_evaluation() -> None:
        nonlocal best_weights
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            metrics = trainee.evaluate(model)
        metrics = dist.from_main(metrics)  # several processes: one best step, one early stop, for all
        model.train()
        if not metrics:  # no validation data: train to the end, keep the final weights
            return
        state["history"][-1].update({f"val_{k}": v for k, v in metrics.items()})  # evaluation follows a step
        bus.emit(ev.METRICS, metrics=metrics, step=state["step"], prefix="val_")
        value = metrics.get(monitor)
        if value is None:
            raise TrainingError(f"train.monitor: validation metric {monitor!r} not produced; have {sorted(metrics)}")
        if state["best_metric"] is None or better(value, state["best_metric"]):
            state.update(best_metric=value, best_step=state["step"], bad_evals=0)
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_checkpoint()  # the best is always on disk, so a resumed run can restore it
        else:
            state["bad_evals"] += 1
            if config.patience and state["bad_evals"] >= config.patience:
                state["stopped_early"] = True

    model.train()
    started = time.perf_counter()
    while state["epoch"] < config.epochs and state["step"] < total and not state["stopped_early"]:
        batches = dist.shard(trainee.step_batches(state["epoch"]))
        while state["position"] < len(batches) and state["step"] < total and not state["stopped_early"]:
            indices = batches[state["position"]]
            step_started = time.perf_counter()
            split_before = state["split"]
            loss_value = _optimizer_step(trainee, wrapped, model, optimizer, scaler, indices, config, device, dtype,
                                         state, dist)
            if state["split"] != split_before:
                pieces = config.gradient_accumulation * state["split"]
                bus.emit(ev.STAGE, name="auto batch size", detail=f"out of GPU memory: {pieces} micro-batches of "
                         f"~{math.ceil(len(indices) / pieces)} per step now (effective batch unchanged)")
            scheduler.step()
            state["step"] += 1
            state["position"] += 1
            result.train_seconds += time.perf_counter() - step_started
            result.examples += len(indices) * dist.world
            state["history"].append({"step": state["step"], "epoch": state["epoch"] + 1, "train_loss": loss_value,
                                     "learning_rate": scheduler.get_last_lr()[0]})
            bus.emit(ev.METRICS, metrics={"loss": loss_value}, step=state["step"], prefix="train_")
            bus.emit(ev.PROGRESS, name="training steps", completed=state["step"], total=total,
                     rate=result.examples_per_second,
                     info=f"epoch {state['epoch'] + 1}/{config.epochs} · loss {loss_value:.4f} · "
                          f"{result.examples_per_second:.1f} examples/s" + _best_text(state, monitor))
            end_of_epoch = state["position"] == len(batches)
            evaluated = (config.eval_every and state["step"] % config.eval_every == 0) or \
                (not config.eval_every and end_of_epoch) or state["step"] == total
            if evaluated:
                run_evaluation()
            out_of_time = bool(config.time_limit) and time.perf_counter() - started >= config.time_limit
            if out_of_time and not evaluated:
                run_evaluation()  # the time limit ends training: the weights it ends with are scored first
            if out_of_time:
                state["stopped_early"] = result.out_of_time = True
                bus.emit(ev.STAGE, name="time limit", detail=f"train.time_limit {config.time_limit:g} s reached at "
                         f"step {state['step']} of {total}")
            if end_of_epoch:
                state["epoch"] += 1
                state["position"] = 0
            stop = _stop_asked(dist, state["step"])  # once: a signal between two reads must not skip the checkpoint
            if out_of_time or stop or (config.checkpoint_every and state["step"] % config.checkpoint_every == 0) \
                    or (not config.checkpoint_every and end_of_epoch):
                save_checkpoint()  # Stop (SIGTERM): a checkpoint of this very step; --resume continues from it
            if stop:
                bus.emit(ev.STAGE, name="stopped", detail=f"on request at step {state['step']} of {total}")
                raise StopRequested(f"training stopped on request at step {state['step']} of {total}; the checkpoint "
                                    "is written, --resume continues")
            if end_of_epoch:
                break  # the next epoch gets its own batch order
        if state["position"] >= len(batches):  # resumed from a checkpoint written at an epoch's last step
            state["epoch"] += 1
            state["position"] = 0
    if best_weights is None and state["best_step"] is not None and checkpoint_dir is not None:
        best = checkpoint_dir / f"step-{state['best_step']:08d}"  # resumed after the best eval: read it back
        checkpoints.load(best, model=dist.loadable(model)[0], restore_random=False)
    elif best_weights is not None:
        model.load_state_dict(best_weights)
    dist.unwrap(model)  # FSDP: a plain module again, the full weights on every process
    model.eval()
    result.steps, result.epochs_completed = state["step"], state["epoch"]
    result.best_step, result.best_metric = state["best_step"], state["best_metric"]
    result.stopped_early, result.history = state["stopped_early"], state["history"]
    result.micro_batches_per_step = config.gradient_accumulation * state["split"]
    result.train_seconds = result.train_seconds or (time.perf_counter() - started)
    return result


STOP_CHECK_EVERY = 10  # several processes: a broadcast to agree on stopping costs a sync, so not every step


def _stop_asked(dist: Distributed, step: int) -> bool:
    # Several processes must agree on the step they stop at, so the main process's flag decides for all.
    if dist.world == 1:
        return stopping.requested()
    return step % STOP_CHECK_EVERY == 0 and bool(dist.from_main(stopping.requested()))


def _best_text(state: dict[str, Any], monitor: str) -> str:
    return f" · best val {monitor} {state['best_metric']:.4f}" if state["best_metric"] is not None else ""


def _optimizer_step(trainee, wrapped, model, optimizer, scaler, indices, config: TrainConfig, device, dtype,
                    state: dict[str, Any], dist: Distributed) -> float:
    """One optimizer step over `indices`, split into micro-batches; on CUDA out-of-memory, split finer.

    Each micro-batch loss is weighted by its share of the step's examples (or of what `trainee.weight` counts,
    e.g. trained tokens), so the gradient equals the full batch's whatever the split: the effective batch size
    never changes. Under FSDP every process must run as many forward/backward passes (each gathers the weights
    with the others): a step batch cut into fewer micro-batches (the epoch's short last batch) is topped up with
    zero-weight repeats of its last one, which leave the random state as they found it (dropout masks then
    follow the same sequence as under DDP).
    """
    weigh = getattr(trainee, "weight", len)
    step_weight = max(weigh(indices), 1)
    while True:
        pieces = max(1, min(len(indices), config.gradient_accumulation * state["split"]))
        chunks = [list(chunk) for chunk in _split(indices, pieces)]
        padding = config.gradient_accumulation * state["split"] - len(chunks) if dist.sharded else 0
        chunks += [chunks[-1]] * padding  # FSDP: the same number of passes on every process
        optimizer.zero_grad(set_to_none=True)
        try:
            total_loss = 0.0
            for number, chunk in enumerate(chunks):
                batch = trainee.collate(chunk, device)
                repeat = number >= len(chunks) - padding
                sync = dist.no_sync(wrapped) if number < len(chunks) - 1 else contextlib.nullcontext()
                kept = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                             device_type=device.type) if repeat else contextlib.nullcontext()
                with sync, kept:  # around the backward too: FSDP decides there whether to reduce-scatter
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        loss = trainee.loss(wrapped, batch)
                        if config.l1:
                            loss = loss + config.l1 * sum(p.abs().sum() for p in dist.local_parameters(model))
                        loss = loss * (weigh(chunk) / step_weight)
                        if repeat:
                            loss = loss * 0.0  # a pass for the collectives only: no gradient, no loss
                    if not torch.isfinite(loss):
                        raise TrainingError(f"non-finite loss ({loss.item()}) at step {state['step'] + 1}, epoch "
                                            f"{state['epoch'] + 1}; lower train.learning_rate or check the data. "
                                            "The last good checkpoint is kept.")
                    (scaler.scale(loss) if scaler else loss).backward()
                total_loss += loss.item()
            break
        except torch.cuda.OutOfMemoryError:
            if len(indices) // pieces <= 1 or dist.sharded:  # FSDP: the other processes wait in a collective
                raise
            state["split"] *= 2  # halve the micro-batch, double accumulation: same effective batch
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    if scaler:
        scaler.unscale_(optimizer)
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return total_loss


def _split(items: list[int], pieces: int):
    size = math.ceil(len(items) / pieces)
    return [items[i:i + size] for i in range(0, len(items), size)]

