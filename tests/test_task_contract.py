"""Every registered task, every kind it supports: fit → predict → save → load → identical predictions
→ ONNX export with a passing parity check → the export predicts like the model.

Tasks join automatically: a new task folder registers itself and provides `example()` data.
"""
import numpy as np
import pytest

import modeldojo as dojo
from modeldojo import tasks

tasks.load_all()
CASES = [(name, kind) for name in tasks.TASKS.names() for kind in tasks.get(name).supported_kinds]


@pytest.mark.parametrize("task_name, kind", CASES)
def test_task_contract(task_name, kind, tmp_path):
    frame, target, overrides = tasks.get(task_name).example(kind, seed=0)
    result = dojo.train(frame, target=target, task=task_name, kind=kind, runs_dir=str(tmp_path), tracking=False,
                        name="contract", overrides=overrides)
    assert result.run.status()["status"] == "completed"
    assert result.metrics["rows"] > 0
    new_rows = tasks.get(task_name).example_inputs(frame, target)
    before = result.model.predict_frame(new_rows)
    saved = result.model.save(tmp_path / "exported-model")
    for reloaded in (dojo.load(result.path), dojo.load(saved)):
        after = reloaded.predict_frame(new_rows)
        assert np.array_equal(before.values, after.values)
        if before.probabilities is not None:
            assert np.array_equal(before.probabilities, after.probabilities)
    assert not list(tmp_path.glob("**/*.tmp*")), "temporary files left behind"

    pytest.importorskip("onnxruntime")
    from modeldojo.export.exporter import export
    from modeldojo.export.runtime import ExportedModel

    exported = export("contract", runs_dir=tmp_path, data=frame)
    assert exported["parity"]["passed"], exported["parity"]
    served = ExportedModel(exported["folder"]).predict(new_rows)
    assert list(served.values) == list(before.values) if kind != "regression" else \
        np.allclose(served.values, before.values, rtol=1e-4)
    if before.probabilities is not None:
        np.testing.assert_allclose(served.probabilities, before.probabilities, atol=1e-4)
