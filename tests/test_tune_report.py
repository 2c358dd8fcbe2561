"""The Optuna study report: sections, embedded plots, degraded notes and escaping, on small in-memory studies."""
import optuna
import pytest

from modeldojo.tuning import report

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial):
    learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    if trial.number == 3:
        raise optuna.TrialPruned()
    if trial.number == 5:
        raise ValueError("diverged")
    return (learning_rate - 0.01) ** 2 + dropout + (0.1 if optimizer == "sgd" else 0.0)


@pytest.fixture
def study():
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=12, catch=(ValueError,))
    return study


def test_full_report_has_sections_images_and_trial_states(study, tmp_path):
    path = tmp_path / "report.html"
    report.write(path, study, metric="loss", direction="minimize", title="Search <demo>",
                 summary={"search": "random", "trials": 12, "workers": 1, "storage": "memory"})
    text = path.read_text(encoding="utf-8")
    assert "<title>Search &lt;demo&gt;</title>" in text
    for heading in ("Trials by state", "Best trial", "Optimisation history", "Parameter importances",
                    "Slice plot", "Parallel coordinates", "<h2>Trials</h2>"):
        assert heading in text
    assert text.count("data:image/png;base64,") >= 3
    assert "<em>" not in text  # every plot could be drawn: no degraded notes
    for state in ("complete", "pruned", "failed"):
        assert f"<td>{state}</td>" in text
    for column in ("learning_rate", "dropout", "optimizer", "duration_s"):
        assert f"<th>{column}</th>" in text
    # The best trial's row comes first in the trials table and is marked.
    trials_table = text.split("<h2>Trials</h2>")[1]
    first_row = trials_table.split("<tbody>")[1].split("</tr>")[0]
    assert "★" in first_row and f"<td>{study.best_trial.number}</td>" in first_row


def test_single_trial_single_parameter_degrades_to_notes(tmp_path):
    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    path = tmp_path / "report.html"
    report.write(path, study, metric="score", direction="minimize", title="tiny")
    text = path.read_text(encoding="utf-8")
    assert "data:image/png;base64," not in text
    assert text.count("at least 2 are needed") == 4
    assert "<td>complete</td>" in text


def test_no_completed_trial_and_parameter_only_importances(tmp_path):
    def objective(trial):
        trial.suggest_float("x", 0, 1)
        raise ValueError("always fails")

    failed = optuna.create_study()
    failed.optimize(objective, n_trials=2, catch=(ValueError,))
    report.write(tmp_path / "failed.html", failed, metric="m", direction="minimize", title="failed")
    assert "No best trial" in (tmp_path / "failed.html").read_text(encoding="utf-8")

    single = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    single.optimize(lambda trial: trial.suggest_float("x", 0, 1) ** 2, n_trials=4)
    report.write(tmp_path / "single.html", single, metric="m", direction="minimize", title="single")
    text = (tmp_path / "single.html").read_text(encoding="utf-8")
    assert "importances need at least 2 parameters" in text
    assert text.count("data:image/png;base64,") == 3  # history, slice and parallel coordinates still drawn


def test_user_text_is_escaped(tmp_path):
    study = optuna.create_study()
    study.optimize(lambda trial: len(trial.suggest_categorical("tag", ["<b>", "<i>x</i>"])), n_trials=3)
    path = tmp_path / "report.html"
    report.write(path, study, metric="<metric>", direction="minimize", title="t",
                 summary={"storage": "<script>alert(1)</script>"})
    text = path.read_text(encoding="utf-8")
    assert "<b>" not in text and "<script>" not in text and "<metric>" not in text
    assert "&lt;b&gt;" in text or "&lt;i&gt;x&lt;/i&gt;" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_plot_that_raises_becomes_a_note(study, tmp_path, monkeypatch):
    from optuna.visualization import matplotlib as optuna_plots

    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(optuna_plots, "plot_slice", broken)
    path = tmp_path / "report.html"
    report.write(path, study, metric="loss", direction="minimize", title="t")
    text = path.read_text(encoding="utf-8")
    assert "slice plot: not shown (RuntimeError: renderer exploded)." in text
    assert text.count("data:image/png;base64,") == 3
