"""Regenerate docs/config.md from the config dataclasses: `.venv/bin/python scripts/config_docs.py`.

tests/test_docs.py fails when a setting is missing from the page, so run this after adding one.
"""
from pathlib import Path

from modeldojo.config import Config

HEADER = """# Configuration

A run is described by one YAML file with eight groups. Every setting is validated when the config is built:
a wrong value names the setting, the value and what is allowed. `dojo validate CONFIG` checks a file without
running anything; `dojo validate --explain` prints this table.

Override any setting on the command line as `group.key=value` (the value is read as YAML), before or after
the flags:

```bash
dojo train examples/ames.yaml train.seed=3 model.name=xgboost 'model.params={max_depth: 4}'
```

or in Python: `dojo.train(df, target="y", overrides={"train.seed": 3})`, with keyword shortcuts
`task, kind, model, name, runs_dir, seed, tracking, tracking_uri, overwrite, params, test_fraction, validation_fraction`.
The resolved config is saved with every run as `runs/<name>/config.yaml` (loadable as is).

Settings marked *Neural* apply to the text, image and chat tasks, *Chat* ones to the chat task; *Tabular* ones to the
tabular task.

| setting | type | default | meaning |
|---|---|---|---|
"""


def main() -> None:
    rows = [f"| `{key}` | {kind} | `{default}` | {text} |" for key, kind, default, text in Config.describe()]
    path = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(rows)} settings)")


if __name__ == "__main__":
    main()
