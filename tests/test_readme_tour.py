"""README.md's tour, run as written: every command of its ```bash blocks, in order, in a temporary folder holding
small versions of the files it names (issue 12: `dojo train data/digits --epochs 5` was broken while every test
passed, because the tests only used absolute paths).

- `dojo …` lines (and `# or: dojo …` alternatives in their comments) go through the `dojo` entry point
  (`modeldojo.cli:main`, in process: twenty commands as subprocesses would cost a minute of imports alone;
  tests/test_cli.py runs the installed `dojo` script itself).
- A line that is not run is in SKIPPED by its exact text, with the reason. Any other line fails the test, so a new
  README command needs a decision here.
- The one substitution: a train/tune command on text or image data gets `model.name=<tiny random model>`
  appended (TINY below; text also `finetune.train_token_embeddings=true`, which a random tiny encoder needs) —
  all-MiniLM-L6-v2 and EfficientNet-Lite0 would take minutes. Everything else runs as written (tracking, epochs,
  `--trials 30 --workers 2`, int8 export), ~20 s in all.
- The ```python block runs too, on the same folder.
"""
import ast
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modeldojo.cli import main
from modeldojo.runs import Run
from modeldojo.tasks.chat import ChatTask
from modeldojo.tasks.image import ImageTask
from modeldojo.tasks.tabular import TabularTask
from modeldojo.tasks.text import TextTask

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

SKIPPED = {
    "make demo": "builds .venv, then examples/ames_demo.py trains on the full Ames data (the same commands run here)",
    "make test": "runs this test suite",
    ".venv/bin/python examples/reviews_data.py": "writes the full reviews data into the repository's data/; the "
                                                 "test writes small data/reviews_{train,test}.csv instead",
    ".venv/bin/python examples/digits_data.py": "writes MNIST-5k into the repository's data/; the test writes a "
                                                "small data/digits/<digit>/*.png instead",
    ".venv/bin/python examples/faq_data.py": "writes the full FAQ into the repository's data/; the test writes a "
                                             "small data/faq.jsonl and data/faq_questions.jsonl instead",
    ".venv/bin/python examples/detection_digits.py data/boxes --images 240": "writes 240 canvases into the "
        "repository's data/; the test writes 16 small ones with the same generator instead",
    ".venv/bin/python examples/forecast_sales.py data/sales.csv --future data/sales_future.csv": "writes into the "
        "repository's data/; the test writes the same two files with the same generator instead",
    "dojo serve boxes": "a server that runs until stopped (tests/test_detection_task.py serves a detector)",
    "dojo chat faq-bot": "reads questions from the terminal (tests/test_chat_task.py talks to it)",
    "dojo ui": "starts the MLflow web server and blocks until Ctrl+C",
    "dojo app": "a web server that runs until stopped (tests/test_webapp_browser.py drives it in Chromium)",
    "dojo tune examples/ames.yaml --trials 200 --name ames-study --storage postgresql://dojo@db.internal/optuna":
        "needs a PostgreSQL server (tests/test_tune_parallel.py runs shared studies on a local one)",
    "dojo serve reviews --workers 2": "a server that runs until stopped (tests/test_serve.py starts and stops one)",
    "dojo serve models:/prices@champion --log-predictions logs/": "a server that runs until stopped "
        "(tests/test_prediction_log.py and tests/test_monitor.py serve with prediction logs)",
    "curl -s localhost:8000/predict -H 'content-type: application/json' -d '{\"inputs\": [\"Great coffee!\"]}'":
        "asks the server above",
}


def _text_overrides():
    settings = TextTask.example("multiclass")[2]
    return [f"model.name={settings['model.name']}", "finetune.train_token_embeddings=true"]


def _image_overrides():
    return [f"model.name={ImageTask.example('binary')[2]['model.name']}"]


# Data names in a command → overrides appended to that train/tune command (see the module docstring).
def _chat_overrides():
    return [f"{key}={value}" for key, value in ChatTask.example("generation")[2].items()]


def _detection_overrides():
    return ["model.name=tiny", "model.image_size=96", "train.epochs=1", "train.threads=1"]


TINY = {"reviews": _text_overrides, "tickets": _text_overrides, "digits": _image_overrides, "faq": _chat_overrides,
        "boxes": _detection_overrides}


def _split_comment(line: str) -> tuple[str, str]:
    """(command, comment): a `#` outside quotes, at the start or after a space, starts a shell comment."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].strip(), line[index + 1:].strip()
    return line.strip(), ""


def readme_commands() -> list[str]:
    """Each command line of README.md's ```bash blocks, in order, plus `# or: dojo …` alternatives."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S):
        for line in block.splitlines():
            command, comment = _split_comment(line)
            if command:
                commands.append(command)
            alternative = re.search(r"\bor:\s*(dojo\s.*)$", comment)
            if alternative:
                commands.append(alternative.group(1).strip())
    return commands


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = readme_commands()
    unknown = [c for c in commands if c not in SKIPPED and not c.startswith("dojo ")]
    assert not unknown, f"README command(s) neither run nor listed in SKIPPED (with the reason): {unknown}"
    stale = [c for c in SKIPPED if c not in commands]
    assert not stale, f"SKIPPED lists command(s) no longer in README.md: {stale}"
    assert "dojo train data/digits --epochs 5" in commands  # the `# or:` alternative is run too


def _pattern(label: str, rng) -> np.ndarray:
    image = rng.integers(0, 60, (20, 20)).astype(np.uint8)
    image[{"0": np.s_[::4, :], "1": np.s_[:, ::4], "2": np.s_[::4, ::4]}[label]] = 230
    return image


def write_small_data(folder: Path) -> None:
    """The files the README names, small: data/ames.csv … tickets.csv, new_houses.csv, holdout.csv."""
    (folder / "data").mkdir()
    houses = pd.concat([TabularTask.example("regression", seed=seed)[0] for seed in (0, 1)], ignore_index=True)
    houses = houses.rename(columns={"price": "Sale_Price"})
    houses.iloc[:200].to_csv(folder / "data" / "ames.csv", index=False)
    houses.iloc[200:300].to_csv(folder / "holdout.csv", index=False)
    houses.iloc[300:320].drop(columns=["Sale_Price"]).to_csv(folder / "new_houses.csv", index=False)
    credit = TabularTask.example("binary", seed=2)[0].rename(columns={"price": "Status"})
    credit["Status"] = credit["Status"].map({"high": "good", "low": "bad"})
    credit.to_csv(folder / "data" / "credit.csv", index=False)
    reviews = TextTask.example("multiclass")[0].rename(columns={"stars": "score"})
    reviews.iloc[:150].to_csv(folder / "data" / "reviews_train.csv", index=False)
    reviews.iloc[150:].to_csv(folder / "data" / "reviews_test.csv", index=False)
    reviews.iloc[:10][["review"]].to_csv(folder / "new_reviews.csv", index=False)
    tickets = TextTask.example("multilabel")[0].rename(columns={"stars": "topics"})
    tickets["topics"] = tickets["topics"].str.replace("tasty", "billing").str.replace("late", "refund")
    tickets.iloc[:90].to_csv(folder / "tickets.csv", index=False)
    faq = ChatTask.example("generation")[0]
    faq.to_json(folder / "data" / "faq.jsonl", orient="records", lines=True)
    faq[["instruction"]].head(3).to_json(folder / "data" / "faq_questions.jsonl", orient="records", lines=True)
    rng = np.random.default_rng(0)
    for label in ("0", "1", "2"):
        (folder / "data" / "digits" / label).mkdir(parents=True)
        for index in range(12):
            Image.fromarray(_pattern(label, rng)).save(folder / "data" / "digits" / label / f"{index:03d}.png")
    import importlib.util

    spec = importlib.util.spec_from_file_location("detection_digits", ROOT / "examples" / "detection_digits.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.generate(folder / "data" / "boxes", images=16, size=96, seed=0, smallest=16, largest=40)
    spec = importlib.util.spec_from_file_location("forecast_sales", ROOT / "examples" / "forecast_sales.py")
    sales = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sales)
    sales.main([str(folder / "data" / "sales.csv"), "--future", str(folder / "data" / "sales_future.csv")])
    (folder / "photos").mkdir()
    for path in sorted((folder / "data" / "boxes" / "images").glob("*.png"))[:2]:
        (folder / "photos" / path.name).write_bytes(path.read_bytes())
    (folder / "examples").mkdir()
    for config in (ROOT / "examples").glob("*.yaml"):  # the README's configs as they are (relative data paths)
        (folder / "examples" / config.name).write_text(config.read_text(encoding="utf-8"), encoding="utf-8")


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)[1:]
    if argv[0] in ("train", "tune"):
        for name, overrides in TINY.items():
            if any(name in word for word in argv[1:]):
                argv += overrides()
    return argv


def test_readme_tour_runs_as_written(tmp_path, monkeypatch, capsys):
    write_small_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    failures = []
    for command in readme_commands():
        if command in SKIPPED or not command.startswith("dojo "):
            continue
        code = main(_argv(command))
        err = capsys.readouterr().err
        if code != 0:
            failures.append(f"{command}\n  exit {code}: {' '.join(err.split())[-600:]}")
    assert not failures, "README commands that fail:\n" + "\n".join(failures)
    runs = {r.name: Run(r).status()["status"] for r in (tmp_path / "runs").iterdir() if (r / "status.json").is_file()}
    assert all(status == "completed" for status in runs.values()), runs
    assert {"ames", "ames-cb", "ames-study", "reviews", "faq-bot", "sales"} <= set(runs)
    assert (tmp_path / "runs" / "faq-bot" / "export" / "gguf" / "model.gguf").is_file()
    assert len(pd.read_json(tmp_path / "answers.jsonl", lines=True)) == 3
    assert (tmp_path / "checks.json").is_file() and (tmp_path / "predictions.csv").is_file()
    assert len(pd.read_csv(tmp_path / "scored.csv")) == 10
    assert len(pd.read_csv(tmp_path / "boxes.csv")) == 2 and len(list((tmp_path / "annotated").iterdir())) == 2
    assert (tmp_path / "runs" / "boxes" / "export" / "onnx" / "model.onnx").is_file()
    forecast = pd.read_csv(tmp_path / "forecast.csv", encoding="utf-8-sig")  # 28 days of 6 stores, with quantiles
    assert len(forecast) == 6 * 28 and {"prediction", "q0.1", "q0.9"} <= set(forecast.columns)
    assert (tmp_path / "runs" / "sales" / "export" / "forecast" / "manifest.json").is_file()

    # The ```python block, on the same folder: `new_rows` and `frame` are the README's placeholders.
    source = re.search(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S).group(1)
    namespace = {"new_rows": pd.read_csv("new_houses.csv"), "frame": pd.read_csv("data/credit.csv")}
    for statement in ast.parse(source).body:
        code = ast.get_source_segment(source, statement)
        try:
            exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
        except TypeError as error:  # `model.predict_proba(new_rows)  # classifiers`: the Ames model is a regressor
            assert "predict_proba needs a classifier" in str(error) and "predict_proba" in code, code
    assert namespace["run"].metrics["r2"] > 0.5
    assert set(namespace["clf"].predict(namespace["frame"])) <= {"good", "bad"}
