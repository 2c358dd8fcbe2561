"""Search spaces: dotted config keys → distributions, validated before any trial runs.

    tune.space:
      train.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
      train.batch_size: {choice: [16, 32]}
      model.params.num_leaves: {int: [15, 255]}

Keys are the config's own (`group.key`); a third part addresses an entry of a dict setting
(`model.params.<learner argument>`). Distributions: `uniform` / `loguniform` [low, high], `int` [low, high]
(optionally a third value: step), `choice` [values…]. Grid search needs `choice` or `int` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import ConfigError

KINDS = ("uniform", "loguniform", "int", "choice")


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str
    values: tuple

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind == "int":
            step = int(self.values[2]) if len(self.values) > 2 else 1
            return trial.suggest_int(self.key, int(self.values[0]), int(self.values[1]), step=step)
        return trial.suggest_float(self.key, float(self.values[0]), float(self.values[1]),
                                   log=self.kind == "loguniform")

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        low, high = self.values[0], self.values[1]
        if self.kind == "int":
            step = int(self.values[2]) if len(self.values) > 2 else 1
            return float(value).is_integer() and low <= value <= high and (int(value) - low) % step == 0
        return low <= value <= high

    def grid(self) -> list:
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            step = int(self.values[2]) if len(self.values) > 2 else 1
            return list(range(int(self.values[0]), int(self.values[1]) + 1, step))
        raise ConfigError(f"tune.space.{self.key}: grid search needs choice or int values, not {self.kind} "
                          "(a continuous range has no grid); use --search random or bayes")


def parse(space: dict[str, Any], base: Config) -> list[Dimension]:
    """Validate every entry (key exists, distribution known, range non-empty, values accepted by the config)."""
    if not space:
        raise ConfigError("tune.space is empty and the task declares no default search space; set tune.space")
    dimensions = []
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"tune.space.{key}: expected one of {{{', '.join(f'{k}: …' for k in KINDS)}}}, "
                              f"got {spec!r}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"tune.space.{key}: {kind} needs a non-empty list, got {values!r}")
        if kind != "choice":
            if len(values) not in (2, 3) or not all(isinstance(v, (int, float)) for v in values):
                raise ConfigError(f"tune.space.{key}: {kind} needs [low, high], got {values!r}")
            if values[0] >= values[1]:
                raise ConfigError(f"tune.space.{key}: empty range {values!r} (low must be below high)")
            if kind == "loguniform" and values[0] <= 0:
                raise ConfigError(f"tune.space.{key}: loguniform needs low > 0, got {values[0]}")
        dimension = Dimension(key, kind, tuple(values))
        for probe in (values if kind == "choice" else values[:2]):  # the config must accept the values
            apply(base, {key: int(probe) if kind == "int" else probe})
        dimensions.append(dimension)
    return dimensions


def apply(config: Config, params: dict[str, Any]) -> Config:
    """The config with sampled values set; `group.dict_setting.entry` keys merge into that dict."""
    flat: dict[str, Any] = {}
    raw = config.to_dict()
    for key, value in params.items():
        parts = key.split(".")
        if len(parts) == 2:
            flat[key] = value
        elif len(parts) == 3 and isinstance(raw.get(parts[0], {}).get(parts[1]), dict):
            merged = dict(flat.get(f"{parts[0]}.{parts[1]}", raw[parts[0]][parts[1]]))
            merged[parts[2]] = value
            flat[f"{parts[0]}.{parts[1]}"] = merged
        else:
            raise ConfigError(f"tune.space: {key!r} is not a setting (group.key) or an entry of a dict setting "
                              "(e.g. model.params.num_leaves)")
    try:
        return config.with_overrides(flat)
    except ConfigError as error:
        raise ConfigError(f"tune.space: {error}") from None
