import modeldojo as dojo


def test_report_and_model_card(multiclass_frame, fast):
    result = dojo.train(multiclass_frame, target="price", **fast)
    html = (result.path / "report.html").read_text()
    for section in ["Test metrics", "Per class", "Confusion matrix", "Feature importance", "Error analysis",
                    "Data checks", "data:image/png;base64,"]:
        assert section in html
    card = (result.path / "MODEL_CARD.md").read_text()
    for section in ["## Intended use", "## Training data", "## Test metrics", "## Data-quality warnings",
                    "## Limitations", "Classes: high, low, mid"]:
        assert section in card


def test_regression_report_has_residual_plots(regression_frame, fast):
    result = dojo.train(regression_frame, target="price", **fast)
    html = (result.path / "report.html").read_text()
    assert 'alt="residuals"' in html and 'alt="predicted vs actual"' in html
