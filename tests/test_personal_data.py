"""Personal data in training tables: `dojo check` names the columns (never the values); data.mask_pii masks them
before training and in every prediction."""
import modeldojo as dojo
from modeldojo.tasks.tabular.task import TabularTask


def with_contacts(seed=0):
    frame = TabularTask.example("binary", seed=seed)[0]
    frame["contact"] = [f"お問い合わせは user{i}@example.co.jp まで" if i % 2 else f"TEL ０９０－１２３４－{i:04d}"
                        for i in range(len(frame))]
    return frame


def test_check_reports_personal_data_columns_without_values():
    report = dojo.check(with_contacts(), target="price")
    found = [f for f in report.findings if f.code == "personal_data"]
    assert [f.column for f in found] == ["contact"]
    assert "EMAIL" in found[0].message and "PHONE" in found[0].message
    assert "example.co.jp" not in found[0].message and "1234" not in found[0].message


def test_mask_pii_masks_before_training_and_prediction(tmp_path):
    frame = with_contacts()
    result = dojo.train(frame, target="price", runs_dir=str(tmp_path), tracking=False, name="masked",
                        overrides={"data.mask_pii": True, "data.label_error_check": False})
    checks = (result.path / "checks.json").read_text(encoding="utf-8")
    assert "example.co.jp" not in checks and "personal_data" not in checks  # masked before the checks
    model = dojo.load(result.path)
    normalized = model._normalize(with_contacts(seed=1).head(4))
    assert set(normalized["contact"].str.extract(r"(<EMAIL>|<PHONE>)")[0]) == {"<EMAIL>", "<PHONE>"}
    assert len(model.predict(with_contacts(seed=1).head(4))) == 4
