"""MODEL_CARD.md: what the model is, what it was trained on, how well it does, and its limits."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def write(path: Path, *, name: str, description: dict[str, Any], metrics: dict[str, Any],
          checks: dict[str, Any] | None, fingerprint: dict[str, Any], created: str) -> Path:
    kind = description.get("kind")
    lines = [f"# Model card: {name}", "",
             f"Created {created} by modeldojo.", "",
             "## Model", "",
             f"- Task: {description.get('task')} ({kind}); target column `{description.get('target')}`",
             f"- Learner: {description.get('learner', 'n/a')}; rounds/iterations: {description.get('rounds', 'n/a')}",
             f"- Target transform: {description.get('target_transform', 'none')}",
             f"- Input features ({len(description.get('features') or [])}): "
             + ", ".join(f"`{f}`" for f in (description.get("features") or [])[:40])
             + (" …" if len(description.get("features") or []) > 40 else ""), ""]
    if description.get("classes"):
        lines += [f"- Classes: {', '.join(map(str, description['classes']))}", ""]
    lines += ["## Intended use", "",
              f"Predict `{description.get('target')}` for new rows with the same columns and meaning as the "
              "training data. Not validated for data from a different population, period or source; "
              "check the data-quality warnings below before relying on it.", "",
              "## Training data", "",
              f"- Source: `{fingerprint.get('source')}` (sha256 `{str(fingerprint.get('sha256'))[:16]}…`)",
              f"- Rows: {fingerprint.get('rows')} (train {fingerprint.get('train_rows')}, validation "
              f"{fingerprint.get('validation_rows')}, test {fingerprint.get('test_rows')})", "",
              "## Test metrics", ""]
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_number(v)} |" for k, v in scalars.items()] + [""]
    lines += ["## Data-quality warnings", ""]
    warnings = [f for f in (checks or {}).get("findings", []) if f["severity"] == "warning"]
    lines += [f"- {w['message']}" for w in warnings] or ["- none"]
    lines += ["", "## Limitations", "",
              "- Metrics come from one held-out split; use `dojo evaluate RUN --cv 5` for their spread.",
              "- Categories never seen in training are treated as missing at prediction time (and counted).",
              "- The model learns correlations in the training data, including its biases.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
