"""Japanese data on the way out: report plots draw Japanese labels (no missing-glyph boxes), CSV files dojo writes
carry the BOM Excel needs (data.output_encoding), and the Japanese demo data is a cp932 file our reader reads."""
import importlib.util
import io
import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import modeldojo as dojo
from modeldojo.cli import main
from modeldojo.data.readers import read
from modeldojo.evaluation import plots, report

ROOT = Path(__file__).resolve().parent.parent
BOM = b"\xef\xbb\xbf"
CLASSES = ["配送", "返品", "支払い"]


def _glyph_warnings(draw) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_japanese_labels_render_without_missing_glyphs():
    family = list(matplotlib.rcParams["font.family"])
    matrix = [[5, 1, 0], [1, 4, 1], [0, 2, 6]]
    assert _glyph_warnings(lambda: plots.confusion_matrix(CLASSES, matrix)) == []
    assert _glyph_warnings(lambda: plots.confusion_matrix(["ｶﾞｲﾄﾞ", "ガイド", "アカウント"], matrix)) == []
    assert _glyph_warnings(lambda: plots.feature_importance({"問い合わせ内容": 0.6, "注文金額": 0.3, "x": 0.1})) == []
    # Our fonts are set only while a report figure is drawn: the user's own plots keep their defaults.
    assert list(matplotlib.rcParams["font.family"]) == family


def test_the_check_above_would_see_boxes():
    """The same label with DejaVu Sans alone (matplotlib's default) does warn: the test above is not vacuous."""
    import matplotlib.pyplot as plt

    def draw():
        with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
            figure, axis = plt.subplots()
            axis.set_title("配送")
            figure.savefig(io.BytesIO(), format="png")
            plt.close(figure)
    assert _glyph_warnings(draw)


def test_english_plots_still_render(tmp_path):
    actual = np.linspace(0, 10, 50)
    assert _glyph_warnings(lambda: (plots.confusion_matrix(["low", "mid", "high"], [[3, 1, 0], [0, 4, 1], [1, 0, 5]]),
                                    plots.predicted_vs_actual(actual, actual + 0.5),
                                    plots.residuals(actual, actual - 0.5),
                                    plots.learning_curves([{"step": 1, "train_loss": 1.0},
                                                           {"step": 2, "val_loss": 0.8, "val_accuracy": 0.7}]))) == []
    assert plots.report_fonts()[0] == "DejaVu Sans"  # Latin text keeps its look; Japanese falls back per glyph


def test_report_with_japanese_classes_has_its_confusion_matrix(tmp_path):
    metrics = {"accuracy": 0.8, "confusion_matrix": {"labels": CLASSES, "matrix": [[5, 1, 0], [1, 4, 1], [0, 2, 6]]}}

    def write():
        report.write(tmp_path / "report.html", title="問い合わせ分類", summary={"目的変数": "カテゴリ"},
                     metrics=metrics, kind="multiclass", importance={"注文金額": 0.7, "商品数": 0.3})
    assert _glyph_warnings(write) == []
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'alt="confusion matrix"' in html and "問い合わせ分類" in html


def _japanese_table(rows=240, seed=0) -> pd.DataFrame:
    random = np.random.default_rng(seed)
    amount = random.normal(size=rows)
    count = random.normal(size=rows)
    labels = np.asarray(CLASSES, dtype=object)[np.digitize(amount + 0.3 * count, [-0.4, 0.4])]
    return pd.DataFrame({"注文金額": amount, "商品数": count,
                         "会員ランク": random.choice(["ゴールド", "シルバー"], size=rows), "カテゴリ": labels})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on a table with Japanese columns and classes: the default output encoding, and plain UTF-8."""
    folder = tmp_path_factory.mktemp("japanese")
    data = folder / "問い合わせ.csv"
    _japanese_table().to_csv(data, index=False, encoding="cp932")
    common = ["--target", "カテゴリ", "--runs-dir", str(folder / "runs"), "--no-tracking", "--model", "random_forest",
              "model.params={n_estimators: 20}", "data.label_error_check=false"]
    assert main(["train", str(data), "--name", "bom", *common]) == 0
    assert main(["train", str(data), "--name", "plain", *common, "data.output_encoding=utf-8"]) == 0
    return folder, data


def _predict(folder: Path, data: Path, run: str, out: Path) -> Path:
    assert main(["predict", run, "--runs-dir", str(folder / "runs"), "--data", str(data), "--out", str(out)]) == 0
    return out


def test_predictions_csv_starts_with_the_bom_by_default_and_reads_back(runs):
    folder, data = runs
    out = _predict(folder, data, "bom", folder / "予測.csv")
    raw = out.read_bytes()
    assert raw.startswith(BOM) and "配送".encode() in raw
    with_pandas = pd.read_csv(out)  # pandas drops the BOM: the first column name is clean
    assert list(with_pandas.columns[:4]) == ["注文金額", "商品数", "会員ランク", "カテゴリ"]
    assert set(with_pandas["prediction"]) <= set(CLASSES)
    ours = read(out)
    assert ours.attrs["encoding"] == "utf-8-sig" and list(ours.columns) == list(with_pandas.columns)
    tsv = _predict(folder, data, "bom", folder / "予測.tsv")
    assert tsv.read_bytes().startswith(BOM) and list(read(tsv).columns) == list(with_pandas.columns)


def test_output_encoding_utf8_writes_plain_utf8(runs):
    folder, data = runs
    raw = _predict(folder, data, "plain", folder / "plain.csv").read_bytes()
    assert not raw.startswith(BOM) and raw.decode("utf-8").startswith("注文金額,")
    assert list(read(folder / "plain.csv").columns)[0] == "注文金額"


def test_stdout_and_json_lines_stay_plain(runs, capsys):
    folder, data = runs
    capsys.readouterr()
    assert main(["predict", "bom", "--runs-dir", str(folder / "runs"), "--data", str(data)]) == 0
    assert capsys.readouterr().out.startswith("注文金額,")  # piped into another program: no BOM
    out = _predict(folder, data, "bom", folder / "予測.jsonl")
    raw = out.read_bytes()
    assert not raw.startswith(BOM)
    first = json.loads(raw.decode("utf-8").splitlines()[0])
    assert first["prediction"] in CLASSES and first["prediction"].encode() in raw  # Japanese as itself
    assert b"\\u" not in raw  # not \\u escapes


def test_predictions_of_an_export_follow_its_source_run(runs):
    from modeldojo.commands import _output_encoding
    from modeldojo.export.runtime import ExportedModel
    from modeldojo.serving.predictor import Predictor

    folder, _ = runs

    def encoding(manifest):
        exported = object.__new__(ExportedModel)  # only the manifest matters here
        exported.manifest = manifest
        return _output_encoding(Predictor(exported, "x", "tabular", "multiclass", CLASSES, [], "onnx", "x"))
    assert encoding({"source_run": str(folder / "runs" / "plain")}) == "utf-8"
    assert encoding({"source_run": str(folder / "runs" / "bom")}) == "utf-8-sig"
    assert encoding({"source_run": str(folder / "moved-away")}) == "utf-8-sig"  # the default: Excel opens it
    assert encoding({"config": {"data": {"output_encoding": "utf-8"}}}) == "utf-8"


def test_trials_csv_follows_output_encoding(tmp_path):
    pytest.importorskip("optuna")
    settings = {"tune.trials": 2, "tune.search": "random", "data.label_error_check": False,
                "model.name": "random_forest", "tune.space": {"model.params.n_estimators": {"choice": [5, 10]}}}
    frame = _japanese_table()
    default = dojo.tune(frame, target="カテゴリ", runs_dir=str(tmp_path), tracking=False, name="t", overrides=settings)
    trials = default.run.directory / "trials.csv"
    assert trials.read_bytes().startswith(BOM) and len(pd.read_csv(trials)) == 2
    plain = dojo.tune(frame, target="カテゴリ", runs_dir=str(tmp_path), tracking=False, name="p",
                      overrides={**settings, "data.output_encoding": "utf-8"})
    assert not (plain.run.directory / "trials.csv").read_bytes().startswith(BOM)


def _inquiries_module():
    spec = importlib.util.spec_from_file_location("japanese_inquiries", ROOT / "examples" / "japanese_inquiries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_japanese_demo_data_is_a_cp932_file_our_reader_reads(tmp_path):
    inquiries = _inquiries_module()
    path = inquiries.write(tmp_path / "inquiries.csv", rows=300, seed=0)
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # really cp932, as Excel on Japanese Windows saves it
    assert not raw.startswith(BOM) and b"\r\n" in raw
    frame = read(path)
    assert frame.attrs["encoding"] == "cp932"
    assert list(frame.columns) == ["問い合わせID", "受付日", "顧客区分", "会員ランク", "受付窓口", "注文金額", "商品数",
                                   "問い合わせ内容", "カテゴリ"]
    assert len(frame) == 300 and set(frame["カテゴリ"]) == set(inquiries.CATEGORIES)
    cells = frame.astype(str).to_numpy().ravel().tolist()
    assert any("，" in cell and cell[0] in "１２３４５６７８９" for cell in cells)  # full-width 12,300
    assert "ｺﾞｰﾙﾄﾞ" in set(frame["会員ランク"]) and "ゴールド" in set(frame["会員ランク"])
    assert frame["受付日"].str.startswith("令和").any() and frame["受付日"].str.match(r"\d{4}年").any()
    assert frame.equals(read(inquiries.write(tmp_path / "again.csv", rows=300, seed=0)))  # deterministic
    unlabelled = inquiries.inquiries(rows=10, seed=1, labelled=False)
    assert "カテゴリ" not in unlabelled.columns and len(unlabelled) == 10


def test_json_lines_keep_japanese_readable_and_one_record_per_line(tmp_path):
    from modeldojo.commands import _write_table

    table = pd.DataFrame({"問い合わせ内容": ["届きません\u2028二行目\x85", "返品したい"], "prediction": CLASSES[:2]})
    path = tmp_path / "予測.jsonl"
    _write_table(table, path)
    raw = path.read_bytes()
    assert "届きません".encode() in raw and not raw.startswith(BOM)
    # U+2028 / NEL would end a line for str.splitlines(): written escaped, the file still has one record per line.
    assert read(path)["問い合わせ内容"].tolist() == table["問い合わせ内容"].tolist()
