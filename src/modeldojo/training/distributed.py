"""Single process (CPU or one GPU) or several processes under `torchrun` / `accelerate launch`.

Nothing to change in user code: the launchers set WORLD_SIZE / RANK / LOCAL_RANK and this module picks them
up. Each rank takes every world-th step batch; only rank 0 writes files. How the processes share the model is
`train.distributed`:

- ddp (auto): DistributedDataParallel, every process holds the whole model, gradients are all-reduced.
- fsdp: PyTorch FSDP2 (`torch.distributed.fsdp.fully_shard`), one unit per transformer layer (the stack
  `strategies.layer_list` finds) plus the root: each process keeps 1/world of every parameter, gradient and
  optimizer state; a unit's weights are all-gathered for its forward and backward, its gradients
  reduce-scattered. Runs on CPU with gloo as on GPUs with NCCL. Frozen and trainable parameters may share a
  unit (LoRA: only the adapters train).

Under fsdp the loop needs, besides `wrap` (before the optimizer is built: the parameters become sharded
DTensors) and `no_sync` (`set_requires_gradient_sync(False)`, around forward *and* backward):
- checkpoints in the single-process format: `gathered` collects the full weights and optimizer state on
  process 0 for checkpoint.save (a collective: every process calls it), `loadable` scatters such a checkpoint
  back into the shards for checkpoint.load. A run checkpointed under ddp or one process resumes under fsdp,
  and the other way round.
- `unwrap` at the end: the model turned back into a plain module in place, with the full trained weights on
  every process, so what a task does after training (merge LoRA, save, predict on process 0 alone) sees an
  ordinary module.
"""
from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError

MODES = ("auto", "ddp", "fsdp")


@dataclass
class Distributed:
    rank: int
    world: int
    device: torch.device
    mode: str = "ddp"  # "ddp" or "fsdp": how several processes share the model (one process: neither)
    _unsharding: Any = field(default=None, repr=False)  # fsdp: what `unwrap` restores

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """FSDP: each process holds a shard of the parameters, gradients and optimizer state."""
        return self.world > 1 and self.mode == "fsdp"

    @classmethod
    def from_environment(cls, mode: str = "auto") -> "Distributed":
        if mode not in MODES:
            raise ConfigError(f"train.distributed: got {mode!r}; use one of {', '.join(MODES)}")
        mode = "ddp" if mode == "auto" else mode
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"), mode)
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world, device, mode)

    def shard(self, batches: list[list[int]]) -> list[list[int]]:
        if self.world == 1:
            return batches
        usable = len(batches) - len(batches) % self.world  # every rank takes the same number of steps
        return batches[self.rank:usable:self.world]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps call. DDP: a wrapper around `model`; FSDP: `model` itself, sharded in
        place (its parameters replaced by DTensor shards: build the optimizer after this)."""
        if self.world == 1:
            return model
        if self.sharded:
            return self._fully_shard(model)
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)

    def _fully_shard(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import fully_shard

        from .strategies import layer_list

        try:
            layers = list(layer_list(model))
        except ConfigError:  # no stack of layers (a small CNN): one unit, the whole model
            layers = []
        self._unsharding = _Unsharding(model)
        for layer in layers:  # bottom-up: each layer its own unit, the rest (embeddings, head) the root's
            fully_shard(layer)
        fully_shard(model)
        return model

    def no_sync(self, wrapped: torch.nn.Module):
        """Skip the gradient all-reduce (DDP) / reduce-scatter (FSDP) on all but the last micro-batch of a step.
        Must cover the micro-batch's backward: FSDP reads the flag there."""
        if self.sharded:
            return _gradient_sync_off(wrapped)
        return wrapped.no_sync() if hasattr(wrapped, "no_sync") else contextlib.nullcontext()

    def grad_scaler(self):
        """fp16's loss scaler; under FSDP the sharded one (an overflow on any shard skips the step everywhere)."""
        if self.sharded:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            return ShardedGradScaler("cuda")
        return torch.amp.GradScaler("cuda")

    def local_parameters(self, model: torch.nn.Module) -> list[torch.Tensor]:
        """The trainable parameters as plain tensors (for an L1 penalty): under FSDP each process's own shard
        of a sharded parameter, so the penalty's gradient lands on that shard once."""
        from torch.distributed.tensor import DTensor

        return [p.to_local() if isinstance(p, DTensor) else p for p in model.parameters() if p.requires_grad]

    def gathered(self, model: torch.nn.Module, optimizer) -> tuple[Any, Any]:
        """(model, optimizer) as checkpoint.save reads them (`.state_dict()`): themselves, or under FSDP their
        full states gathered onto process 0 (on CPU) in the single-process format. A collective under FSDP:
        every process calls it; only process 0 gets the states (the others get (None, None))."""
        if not self.sharded:
            return model, optimizer
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(model, options=options)
        optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
        if not self.is_main:
            return None, None
        for group in _tied_names(model):  # one tensor per tied group, as save_model expects
            kept = next((name for name in group if name in weights), None)
            for name in group:
                if kept is not None:
                    weights[name] = weights[kept]
        return _Saved(weights), _Saved(_keyed_by_index(optimizer_state))

    def loadable(self, model: torch.nn.Module, optimizer=None) -> tuple[Any, Any]:
        """(model, optimizer) for checkpoint.load: themselves, or under FSDP views that load a full
        (single-process format) checkpoint into the shards. Every process loads."""
        if not self.sharded:
            return model, optimizer
        return _ShardedModel(model), (_ShardedOptimizer(model, optimizer) if optimizer is not None else None)

    def from_main(self, value: Any) -> Any:
        """Process 0's `value` on every process (a collective): decisions that gate collectives (a new best
        checkpoint, early stopping) must be the same everywhere, even if evaluations differ in the last bit."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def random_states(self) -> list[list[str]] | None:
        """Every process's torch random state(s) (CPU, and its GPU's), base64, gathered on all processes (a
        collective). A checkpoint's rng.pt holds process 0's only: with these in its state.json, each process
        resumes its own dropout masks. None with one process."""
        if self.world == 1:
            return None
        import torch.distributed as dist

        mine = [torch.get_rng_state()] + ([torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else [])
        states: list[Any] = [None] * self.world
        dist.all_gather_object(states, [base64.b64encode(state.numpy().tobytes()).decode() for state in mine])
        return states

    def restore_random_states(self, states: list[list[str]] | None) -> None:
        """This process's random state(s) from `random_states` (a checkpoint of as many processes)."""
        if self.world == 1 or not states or len(states) != self.world:
            return
        mine = [torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8) for text in states[self.rank]]
        torch.set_rng_state(mine[0])
        if self.device.type == "cuda" and len(mine) > 1:
            torch.cuda.set_rng_state(mine[1], self.device)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """After training: under FSDP, `model` turned back into a plain module in place, every process holding
        the full trained weights (a collective); otherwise `model` as it is."""
        if self.sharded and self._unsharding is not None:
            self._unsharding.restore(model)
            self._unsharding = None
        return model


@contextlib.contextmanager
def _gradient_sync_off(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _tied_names(model: torch.nn.Module) -> list[list[str]]:
    """Groups of state-dict names that are one tensor (tied embeddings), sorted."""
    names: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    return [sorted(group) for group in names.values() if len(group) > 1]


class _Saved:
    """A state already gathered, in the shape checkpoint.save reads (`state_dict()`)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state


def _keyed_by_index(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state keyed by parameter name (torch.distributed.checkpoint's) → keyed by position, as
    `Optimizer.state_dict()` writes it: parameters numbered in the order of the parameter groups."""
    index: dict[str, int] = {}
    groups = []
    for group in state["param_groups"]:
        for name in group["params"]:
            index.setdefault(name, len(index))
        groups.append({**group, "params": [index[name] for name in group["params"]]})
    return {"state": {index[name]: value for name, value in state["state"].items()}, "param_groups": groups}


class _ShardedModel:
    """checkpoint.load's view of a sharded model: safetensors' `load_model` reads `state_dict()` (only for its
    names and which of them are tied) and calls `load_state_dict(full, strict=False)`."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        placeholders: dict[int, torch.Tensor] = {}  # a tied group shares one: load_model then sees the tie
        return {name: placeholders.setdefault(id(tensor), torch.zeros(1))
                for name, tensor in self.model.state_dict(keep_vars=True).items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = False):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        names = list(self.model.state_dict(keep_vars=True))
        full = dict(state)
        for group in _tied_names(self.model):  # the file holds one name of a tied group: give it to all
            kept = next((name for name in group if name in state), None)
            for name in group:
                if kept is not None:
                    full.setdefault(name, state[kept])
        set_model_state_dict(self.model, {name: full[name] for name in names if name in full},
                             options=StateDictOptions(full_state_dict=True, strict=False))
        missing = [name for name in names if name not in state]
        unexpected = [name for name in state if name not in names]
        if strict and (missing or unexpected):
            raise RuntimeError(f"checkpoint: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return missing, unexpected


class _ShardedOptimizer:
    """checkpoint.load's view of the optimizer of a sharded model: a single-process optimizer state (keyed by
    position) loaded into the shards."""

    def __init__(self, model: torch.nn.Module, optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        names = {id(parameter): name for name, parameter in self.model.named_parameters()}
        order = [names[id(p)] for group in self.optimizer.param_groups for p in group["params"]]
        if len(order) != sum(len(group["params"]) for group in state["param_groups"]):
            raise ValueError("checkpoint: the optimizer state does not match this model's trainable parameters")
        by_name = {"state": {order[int(i)]: value for i, value in state["state"].items()},
                   "param_groups": [{**group, "params": [order[int(i)] for i in group["params"]]}
                                    for group in state["param_groups"]]}
        set_optimizer_state_dict(self.model, self.optimizer, by_name,
                                 options=StateDictOptions(full_state_dict=True))


class _Unsharding:
    """Undoes `fully_shard` after training (PyTorch has no public call for it).

    FSDP2 changes a sharded module in place: its class becomes an FSDP subclass, hooks are added (forward,
    state dict), a few attributes set, and its parameters replaced by DTensor shards. Recorded before
    sharding: each module's class and hook tables; restored after: those, and plain parameters holding the
    full tensors (all-gathered on every process), tied parameters still tied, requires_grad kept."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.saved = [(module, type(module), {key: dict(value) for key, value in vars(module).items()
                                              if "hook" in key and isinstance(value, dict)}, set(vars(module)))
                      for module in model.modules()]

    def restore(self, model: torch.nn.Module) -> None:
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.tensor import DTensor

        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()  # the root keeps its gathered weights after a forward: shards registered again
        full: dict[int, torch.nn.Parameter] = {}
        with torch.no_grad():
            for module in model.modules():  # the same order on every process: the all-gathers pair up
                for name, parameter in list(module._parameters.items()):
                    if isinstance(parameter, DTensor):
                        if id(parameter) not in full:
                            full[id(parameter)] = torch.nn.Parameter(parameter.full_tensor().contiguous(),
                                                                     requires_grad=parameter.requires_grad)
                        module._parameters[name] = full[id(parameter)]
        try:
            from torch.distributed._composable_state import _module_state_mapping
        except ImportError:  # pragma: no cover - a torch without it has nothing to forget
            _module_state_mapping = {}
        for module, cls, hooks, keys in self.saved:
            module.__class__ = cls
            for key, table in hooks.items():
                current = vars(module)[key]
                current.clear()  # in place: hook handles hold the table itself
                current.update(table)
            for key in set(vars(module)) - keys:
                if key.startswith("__composable_api") or "fsdp" in key.lower():
                    del vars(module)[key]
            _module_state_mapping.pop(module, None)
