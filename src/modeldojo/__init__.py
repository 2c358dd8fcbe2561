"""modeldojo: from your own data to a trained, evaluated, exported and served model.

    import modeldojo as dojo
    run = dojo.train("houses.csv", target="Sale_Price")
    run.metrics["r2"]; run.model.predict(new_rows)
    model = dojo.load(run.path)          # or dojo.load("runs/<name>")
"""
from .api import check, evaluate, load, train
from .config import Config
from .errors import ConfigError, DataError, DojoError
from .model import Model

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "DataError", "DojoError", "Model", "check", "evaluate", "load", "monitor", "retrain",
           "train", "tune", "__version__"]


def tune(*args, **kwargs):
    """Hyperparameter search (Optuna; `pip install 'modeldojo[tune]'`): see modeldojo.tuning.tune.tune."""
    from .tuning.tune import tune as run_tune

    return run_tune(*args, **kwargs)


def monitor(*args, **kwargs):
    """Drift of new rows or a prediction log against a run's training rows: see modeldojo.monitoring.monitor."""
    from .monitoring.monitor import monitor as run_monitor

    return run_monitor(*args, **kwargs)


def retrain(*args, **kwargs):
    """A challenger trained on old + new rows, promoted only when better: see modeldojo.retraining.retrain."""
    from .retraining import retrain as run_retrain

    return run_retrain(*args, **kwargs)
