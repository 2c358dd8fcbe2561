"""Optuna's RDBStorage against a real throw-away PostgreSQL server (fixture in postgres_server.py)."""

import optuna


def test_optuna_study_on_postgres(postgres_url):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=postgres_url, study_name="smoke")
    study.optimize(lambda trial: (trial.suggest_float("x", -10, 10) - 2) ** 2, n_trials=3)

    loaded = optuna.load_study(study_name="smoke", storage=postgres_url)
    complete = loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 3
    assert loaded.best_value == min(t.value for t in complete)
