"""Japanese (and Chinese) data end to end: cp932 files from Excel, full-width numbers, half-width katakana,
Japanese and era dates, CJK free-text detection, character n-grams in the checks, and the same normalisation
at prediction time (data/normalize.py, data/freetext.py)."""
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

import modeldojo as dojo
from modeldojo import api, tasks
from modeldojo.data.checks import run_checks
from modeldojo.data.freetext import free_text_columns
from modeldojo.data.normalize import apply_plan, normalize_table, read_date, read_number
from modeldojo.data.readers import read

PLACES = ["京都", "大阪", "札幌", "那覇", "金沢", "仙台"]
GOOD = ["ガイドさんの説明がとても分かりやすく、また参加したいです", "景色が素晴らしくて写真をたくさん撮りました",
        "スタッフの対応が丁寧で安心して楽しめました"]
BAD = ["集合時間に遅れてきて、説明もほとんどありませんでした", "バスが狭くて長時間の移動がつらかったです",
       "予約の確認メールが届かず、当日とても不安でした"]
KINDS = ["ガイド", "ｶﾞｲﾄﾞ", "ホテル", "ﾎﾃﾙ", "ツアー"]  # half-width forms of the same two categories
DATES = ["2024年1月5日", "令和6年1月5日", "2024/1/5", "R6.1.5", "令和元年5月1日", "平成31年4月30日"]


def japanese_table(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    records = []
    for index in range(rows):
        good = index % 2 == 0
        comment = f"{PLACES[index % len(PLACES)]}のツアー{index}回目。{(GOOD if good else BAD)[index % 3]}"
        amount = int(rng.integers(1000, 90000))
        written = f"{amount:,}".translate(str.maketrans("0123456789,", "０１２３４５６７８９，"))  # １２，３４５
        records.append({"コメント": comment, "金額": "￥" + written if index % 3 == 0 else written,
                        "種類": KINDS[index % len(KINDS)], "日付": DATES[index % len(DATES)],
                        "評価": "良い" if good else "悪い"})
    return pd.DataFrame(records)


@pytest.fixture
def cp932_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    japanese_table().to_csv(path, index=False, encoding="cp932")  # what Excel on Japanese Windows writes
    return path


# -- reading Japanese cells ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2024年1月5日", datetime(2024, 1, 5)), ("令和6年1月5日", datetime(2024, 1, 5)),
    ("平成31年4月30日", datetime(2019, 4, 30)), ("令和元年5月1日", datetime(2019, 5, 1)),
    ("R6.1.5", datetime(2024, 1, 5)), ("H31.4.30", datetime(2019, 4, 30)), ("h31/4/30", datetime(2019, 4, 30)),
    ("昭和64年1月7日", datetime(1989, 1, 7)), ("2024/1/5", datetime(2024, 1, 5)),
    ("２０２４年１月５日（金）", datetime(2024, 1, 5)), ("㍻31年4月30日", datetime(2019, 4, 30)),
    ("2024/01/05 10:30", datetime(2024, 1, 5, 10, 30)),
])
def test_japanese_and_era_dates(text, expected):
    from modeldojo.data.normalize import fold

    assert read_date(fold(text))[0] == expected


@pytest.mark.parametrize("text", ["2024年2月30日", "S1-2-3", "令和6年", "1/5/2024", "R6"])
def test_not_dates(text):
    assert read_date(text) is None


@pytest.mark.parametrize("text, expected", [
    ("1,234", ("1234", None)), ("¥1,234", ("1234", "¥")), ("\\1,234", ("1234", "¥")), ("1,234円", ("1234", "¥")),
    ("▲1,234", ("-1234", None)), ("-$5.50", ("-5.50", "$")), ("12", ("12", None)),
    ("1,23", None), ("12%", None), ("-", None), ("¥1,234円", None), ("1,2,3", None),
])
def test_numbers(text, expected):
    assert read_number(text) == expected


def test_cp932_file_is_normalised_before_types_are_inferred(cp932_csv):
    prepared = api.prepare(str(cp932_csv), api.resolve_config(str(cp932_csv), "評価"))
    frame = prepared.frame
    raw = read(cp932_csv)
    assert raw.attrs["encoding"] == "cp932" and raw["金額"].dtype == object
    assert pd.api.types.is_integer_dtype(frame["金額"])
    expected = raw["金額"].str.replace("￥", "").str.replace("，", "").map(
        lambda text: int(text.translate(str.maketrans("０１２３４５６７８９", "0123456789"))))
    assert frame["金額"].tolist() == expected.tolist()
    assert set(frame["種類"]) == {"ガイド", "ホテル", "ツアー"}  # ｶﾞｲﾄﾞ and ガイド: one category
    assert pd.api.types.is_datetime64_any_dtype(frame["日付"])
    by_text = dict(zip(raw["日付"], frame["日付"]))
    assert by_text["2024年1月5日"] == by_text["令和6年1月5日"] == by_text["2024/1/5"] == by_text["R6.1.5"] \
        == pd.Timestamp("2024-01-05")
    assert by_text["令和元年5月1日"] == pd.Timestamp("2019-05-01")
    assert by_text["平成31年4月30日"] == pd.Timestamp("2019-04-30")
    assert frame["コメント"].equals(raw["コメント"])  # free text stays as written
    assert prepared.normalization["columns"]["金額"] == {"as": "number", "currency": "¥"}
    assert "コメント" not in prepared.normalization["columns"]


def test_check_report_lists_the_normalisation(cp932_csv):
    report = api.check(str(cp932_csv), target="評価")
    normalised = {f.column: f for f in report.findings if f.code == "normalized"}
    assert set(normalised) == {"金額", "種類", "日付"}
    assert all(f.severity == "info" for f in normalised.values())
    assert normalised["金額"].details == {"as": "number", "cells": 120, "rewritten": 120}
    assert "'ｶﾞｲﾄﾞ' → 'ガイド'" in normalised["種類"].message and "5 distinct values became 3" in normalised["種類"].message
    assert normalised["日付"].details["as"] == "date" and "→ 2024-01-05" in normalised["日付"].message
    notes = {row["column"]: row["notes"] for row in report.column_table}
    assert notes["金額"] == "normalised (number)" and notes["日付"] == "normalised (date)"
    assert notes["コメント"] == "free text"  # unique and without spaces, yet not an identifier
    assert "コメント" not in report.id_columns
    assert not [f for f in report.findings if f.severity == "error"]
    off = api.check(str(cp932_csv), target="評価", overrides={"data.normalize_text": False})
    assert not [f for f in off.findings if f.code == "normalized"]


def test_cells_that_do_not_read_are_kept_and_reported():
    frame = pd.DataFrame({"price": ["１，２００", "３００", "不明", "４５０", "５００", "６００", "７００", "８００",
                                    "９００", "１，０００"], "label": list("abababab" "ab")})
    frame.attrs.update(source="prices.csv", line_base=2)
    out = normalize_table(frame)
    assert out["price"].tolist() == ["1,200", "300", "不明", "450", "500", "600", "700", "800", "900", "1,000"]
    warning = next(entry for entry in out.attrs["normalization_report"] if entry["code"] == "not_normalized")
    assert warning["severity"] == "warning" and "'不明'; first at line 4" in warning["message"]
    assert "9 of 10 cells" in warning["message"]
    mixed = normalize_table(pd.DataFrame({"price": ["¥100", "$200", "300"]}))
    assert mixed["price"].tolist() == ["¥100", "$200", "300"]
    assert "several currencies" in mixed.attrs["normalization_report"][0]["message"]


# -- finding prose in any script ----------------------------------------------------------------------------
def test_japanese_comment_table_is_the_text_task(cp932_csv):
    frame = read(cp932_csv)
    assert free_text_columns(frame, {"評価"}) == ["コメント"]
    assert tasks.detect(frame, "評価") == "text"
    assert api.check(str(cp932_csv), target="評価").free_text == ["コメント"]


def test_chinese_comment_table_is_the_text_task():
    openings = ["质量很好", "物流很快", "包装破损", "客服态度差", "性价比很高", "颜色和图片不一样"]
    closings = ["会再次购买", "推荐给朋友", "非常失望", "不会再买了"]
    frame = pd.DataFrame({
        "评论": [f"{openings[i % 6]}，{closings[i % 4]}，第{i}次下单" for i in range(60)],
        "城市": ["北京", "上海", "广州"] * 20, "评分": ["好", "差"] * 30})
    assert free_text_columns(frame, {"评分"}) == ["评论"]
    assert tasks.detect(frame, "评分") == "text"


def test_english_and_japanese_text_columns_are_both_found():
    frame = japanese_table(60)[["コメント", "種類", "評価"]]
    frame["review"] = [f"The tour number {i} was {'great fun with a friendly guide' if i % 2 else 'late and dull'}"
                       for i in range(60)]
    assert free_text_columns(frame, {"評価"}) == ["コメント", "review"]
    assert tasks.detect(frame, "評価") == "text"  # the text task reads both columns, joined
    short = pd.DataFrame({"city": ["東京都新宿区", "大阪市北区", "札幌市中央区"] * 20,
                          "date": ["令和6年12月25日(水)", "令和元年12月25日(水)", "2024年1月5日"] * 20})
    assert free_text_columns(short, set()) == []  # place names and dates are not prose


def test_english_detection_is_unchanged():
    frame = pd.DataFrame({"note": [f"customer {i} asked about the delivery date" for i in range(50)],
                          "short": [f"item {i}" for i in range(50)], "code": [f"AB-{i:05d}" for i in range(50)]})
    assert free_text_columns(frame, set()) == ["note"]


def test_leakage_check_reads_japanese_text_as_character_ngrams():
    rng = np.random.default_rng(1)
    status = np.where(rng.random(200) < 0.5, "解約", "継続")
    memo = [f"{PLACES[i % 6]}の{i}番のお客様より解約の申し出、返金処理済み" if s == "解約" else
            f"{PLACES[i % 6]}の{i}番のお客様へ更新のご案内、継続を確認済み" for i, s in enumerate(status)]
    frame = pd.DataFrame({"memo": memo, "age": rng.integers(20, 70, 200), "status": status})
    report = run_checks(frame, "status", label_errors=False)
    assert report.free_text == ["memo"]
    assert [f.column for f in report.findings if f.code == "leakage"] == ["memo"]  # every memo is distinct


# -- the same normalisation when predicting -----------------------------------------------------------------
def test_prediction_reads_new_rows_as_training_did(tmp_path):
    rng = np.random.default_rng(0)
    size = rng.integers(20, 200, 240)
    area = rng.choice(["北区", "南区", "ﾐﾅﾄ区", "ミナト区"], 240)
    full_width = str.maketrans("0123456789,", "０１２３４５６７８９，")
    frame = pd.DataFrame({"広さ": [f"{value * 10:,}".translate(full_width) for value in size], "地区": area,
                          "価格": size * 1000 + np.where(np.isin(area, ["ﾐﾅﾄ区", "ミナト区"]), 50000, 0)})
    run = dojo.train(frame, target="価格", runs_dir=str(tmp_path / "runs"), tracking=False, name="jp")
    model = dojo.load(run.path)
    assert model.meta["normalization"]["columns"]["広さ"] == {"as": "number", "currency": None}
    written = pd.DataFrame({"広さ": ["１，２３０", "４５０"], "地区": ["ﾐﾅﾄ区", "北区"]})
    plain = pd.DataFrame({"広さ": [1230, 450], "地区": ["ミナト区", "北区"]})
    assert model.predict(written).tolist() == model.predict(plain).tolist()
    one_row = model.predict(written.iloc[[0]]).tolist()  # a row reads the same alone as in its batch
    assert one_row == model.predict(plain.iloc[[0]]).tolist() == model.predict(written).tolist()[:1]
    assert apply_plan(written, model.meta["normalization"])["広さ"].tolist() == [1230, 450]


def test_an_onnx_export_reads_full_width_cells_as_the_run_does(tmp_path):
    """The recorded plan travels in the export's manifest: frames and records (a server's JSON) alike."""
    pytest.importorskip("onnxruntime")
    import modeldojo as dojo
    from modeldojo.export.exporter import export
    from modeldojo.export.runtime import ExportedModel

    rng = np.random.default_rng(0)
    area = rng.integers(20, 120, 300)
    ward = rng.choice(["ﾐﾅﾄ区", "渋谷区", "新宿区"], 300)
    price = area * 10 + np.where(ward == "ﾐﾅﾄ区", 300, 0) + rng.normal(0, 20, 300)
    wide = str.maketrans("0123456789,", "０１２３４５６７８９，")
    frame = pd.DataFrame({"面積": [f"{a:,}".translate(wide) for a in area], "区": ward, "価格": price})
    tmp_path = str(tmp_path)
    dojo.train(frame, target="価格", runs_dir=tmp_path, tracking=False, name="ja",
               overrides={"data.label_error_check": False})
    exported = ExportedModel(export("ja", runs_dir=tmp_path, data=frame)["folder"])
    rows = pd.DataFrame({"面積": ["１００", "100"], "区": ["ﾐﾅﾄ区", "ミナト区"]})
    native = dojo.load("ja", runs_dir=tmp_path).predict(rows)
    assert native[0] == native[1]
    for given in (rows, rows.to_dict("records")):
        values = exported.predict(given).values
        assert values[0] == values[1] and abs(values[0] - native[0]) < 1e-3 * abs(native[0])


def test_jsonl_records_keep_line_separator_characters_and_run_files_keep_japanese(tmp_path):
    """A JSONL record ends at a newline only (U+2028 inside a string is text), and the JSON files of a run
    are readable UTF-8, not \\u escapes."""
    import json

    from modeldojo.runs import write_json

    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"text": "一行目\u2028二行目", "label": "a"}, ensure_ascii=False) + "\n"
                    + json.dumps({"text": "次", "label": "b"}, ensure_ascii=False) + "\r\n", encoding="utf-8")
    frame = read(path)
    assert frame["text"].tolist() == ["一行目\u2028二行目", "次"]
    write_json(tmp_path / "metrics.json", {"クラス": "返品"})
    assert "返品" in (tmp_path / "metrics.json").read_text(encoding="utf-8")
