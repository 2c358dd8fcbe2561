"""Step batches for sequence tasks (text classification, chat): shared here so no task reaches into another."""
from __future__ import annotations

import numpy as np

MEGA_BATCH = 50  # step batches sorted by length together (as in transformers' LengthGroupedSampler)


def shuffled(count: int, step_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Example indices per optimizer step, a fresh order each epoch — pure in (seed, epoch), so a resumed run
    replays the same batches."""
    order = np.random.default_rng([seed, epoch]).permutation(count)
    return [order[i:i + step_size].tolist() for i in range(0, count, step_size)]


def length_grouped(lengths: np.ndarray, step_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled step batches of similar length: little padding, still random across the epoch.

    Deterministic in (seed, epoch), so a resumed run sees exactly the batches the original would.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    chunk = step_size * MEGA_BATCH
    batches = []
    for start in range(0, len(order), chunk):
        mega = order[start:start + chunk]
        mega = mega[np.argsort(-lengths[mega], kind="stable")]
        batches += [mega[i:i + step_size].tolist() for i in range(0, len(mega), step_size)]
    permutation = rng.permutation(len(batches))
    return [batches[i] for i in permutation]
