"""Text examples → token ids, length-grouped step batches and dynamically padded tensors."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ...errors import DataError

LENGTH_PERCENTILE = 95


def join_texts(frame: pd.DataFrame, columns: list[str], separator: str) -> list[str]:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"missing text column(s) {', '.join(map(repr, missing))}")
    parts = frame[columns].fillna("").astype(str)
    if len(columns) == 1:
        return parts[columns[0]].tolist()
    return parts.agg(f" {separator} ".join, axis=1).tolist()


def with_prefix(texts: list[str], prefix: str) -> list[str]:
    """Each text behind the encoder's input prefix (e5: "query: "); one function for training, prediction and
    the exported model, so all three format a text the same way."""
    return [prefix + text for text in texts] if prefix else texts


def choose_max_length(lengths: np.ndarray, model_limit: int) -> int:
    """The 95th percentile of token lengths, rounded up to a multiple of 8, within the model's limit."""
    wanted = int(np.percentile(lengths, LENGTH_PERCENTILE)) if len(lengths) else model_limit
    return max(8, min(model_limit, int(math.ceil(wanted / 8) * 8)))


def pad(sequences: list[list[int]], pad_id: int):
    """(input_ids, attention_mask) tensors padded to the longest sequence of this batch only."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, :len(sequence)] = 1
    return ids, mask


def length_batches(sequences: list[list[int]], batch_size: int, pad_id: int, max_padding: float = 0.25):
    """Yield (row positions, input_ids, attention_mask) with similar lengths together: less padding at
    prediction time (predict and the exported model's runtime batch the same way). Longest first; a batch
    also ends where the next row would push padding past `max_padding` of its real tokens — a transformer's
    cost is linear in tokens, padded or not (measured: 8 served reviews padded to the longest took 23 ms,
    one at a time 8 × 1.9 ms), while one more model call costs ~0.1 ms."""
    order = np.argsort([-len(s) for s in sequences], kind="stable")
    groups: list[list[int]] = []
    tokens = 0
    for index in order.tolist():
        length = len(sequences[index])
        group = groups[-1] if groups else []
        longest = len(sequences[group[0]]) if group else length
        if not group or len(group) == batch_size or (len(group) + 1) * longest > (1 + max_padding) * (tokens + length):
            groups.append([])
            tokens = 0
        groups[-1].append(index)
        tokens += length
    for group in groups:
        input_ids, mask = pad([sequences[i] for i in group], pad_id)
        yield np.asarray(group), input_ids, mask
