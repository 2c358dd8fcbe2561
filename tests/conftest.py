import numpy as np
import pandas as pd
import pytest

from modeldojo.tasks.tabular import TabularTask
from postgres_server import postgres_url  # noqa: F401
from browser import browser, new_page, page  # noqa: F401


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module (detection): two threads on the shared CI cores made its steps ~100x
    slower. Module scope, so it is in place before module-scoped training fixtures run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def regression_frame():
    return TabularTask.example("regression", seed=0)[0]


@pytest.fixture
def binary_frame():
    return TabularTask.example("binary", seed=0)[0]


@pytest.fixture
def multiclass_frame():
    return TabularTask.example("multiclass", seed=0)[0]


@pytest.fixture
def write_csv(tmp_path):
    def write(frame: pd.DataFrame, name: str = "data.csv") -> str:
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return str(path)
    return write


@pytest.fixture
def fast(tmp_path):
    """Shortcuts for api.train that keep unit tests quick and self-contained."""
    return {"runs_dir": str(tmp_path / "runs"), "tracking": False}


def make_classification(rows=300, seed=0, classes=("a", "b")):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    score = x[:, 0] + 0.5 * x[:, 1]
    cut = np.quantile(score, np.linspace(0, 1, len(classes) + 1)[1:-1])
    labels = np.asarray(classes, dtype=object)[np.searchsorted(cut, score)]
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "label": labels})
