"""Encoding detection (data.encoding: auto): Excel's Japanese exports, Western guesses, clear failures."""
import json

import pandas as pd
import pytest

from modeldojo import api
from modeldojo.cli import main
from modeldojo.data.encodings import detect
from modeldojo.data.readers import read
from modeldojo.errors import DataError
from modeldojo.runs import Run

# Excel (cp932) writes these; shift_jis cannot decode ①, ㈱, ～ (FF5E) or 髙.
EXCEL_ROWS = [["髙橋", "㈱山田商事", "①～③", 120], ["佐藤", "東京ガス", "ありがとう", 95], ["鈴木", "ｱｲｳ商店", "カタカナ", 70]]
PLAIN_ROWS = [["高橋", "山田商事", "こんにちは", 120], ["佐藤", "東京ガス", "ありがとう", 95], ["鈴木", "大阪", "カタカナ", 70]]
HEADER = ["名前", "会社", "メモ", "金額"]


def write(path, rows, encoding, delimiter=","):
    text = "".join(delimiter.join(map(str, row)) + "\r\n" for row in [HEADER, *rows])
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("encoding, rows, name, delimiter, codec", [
    ("cp932", EXCEL_ROWS, "excel.csv", ",", "cp932"),
    ("euc_jp", PLAIN_ROWS, "euc.csv", ",", "euc_jp"),
    ("utf-8-sig", EXCEL_ROWS, "bom.csv", ",", "utf-8-sig"),
    ("utf-16", EXCEL_ROWS, "unicode.txt", "\t", "utf-16"),  # Excel "Unicode text": BOM, tab-separated
])
def test_japanese_three_row_files_read_correctly(tmp_path, encoding, rows, name, delimiter, codec):
    frame = read(write(tmp_path / name, rows, encoding, delimiter))
    assert list(frame.columns) == HEADER
    assert frame.astype({"金額": object}).values.tolist() == rows
    assert frame.attrs["encoding"] == codec and frame.attrs["encoding_warning"] is None


def test_mostly_ascii_cp932_file_with_one_japanese_value(tmp_path):
    rows = [f"{i},Tokyo,{i * 2}" for i in range(60)]
    rows[37] = "37,東京,74"
    path = tmp_path / "mostly_ascii.csv"
    path.write_bytes(("id,city,value\n" + "\n".join(rows) + "\n").encode("cp932"))
    frame = read(path)
    assert frame.attrs["encoding"] == "cp932" and frame["city"][37] == "東京" and frame["city"][0] == "Tokyo"


def test_no_candidate_decodes_names_byte_offset_and_never_suggests_latin1_lightly(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"size,price\n1,2\n\x81,3\n")  # 0x81: lone cp932/euc_jp lead byte, undefined in cp1252
    with pytest.raises(DataError) as error:
        read(path)
    message = " ".join(str(error.value).split())
    assert "binary.csv" in message and "byte offset 15 (line 3, column 1)" in message and "bytes 81" in message
    assert "--encoding" in message and "latin-1 cannot fail" in message


def test_ambiguous_japanese_bytes_warn_naming_the_alternative():
    raw = "name,x\n髙,1\n".encode("cp932")  # fb fc: also a valid euc_jp character (釵); equal scores
    codec, warning = detect(raw, "t.csv")
    assert codec == "cp932" and "euc_jp" in warning
    assert detect(raw, "t.csv", prefer="euc_jp")[0] == "euc_jp"  # the run's encoding breaks ties
    # EUC-JP kanji misread as cp932 become half-width katakana: euc_jp looks more Japanese, even if cp932 preferred
    raw = "名前,都市\n山田,横浜\n佐藤,新宿\n".encode("euc_jp")
    codec, warning = detect(raw, "e.csv", prefer="cp932")
    assert codec == "euc_jp" and "--encoding cp932" in warning


def test_western_file_is_guessed_with_a_warning_and_never_latin1(tmp_path):
    path = tmp_path / "de.csv"
    path.write_bytes("name,stadt\nMüller,Köln\nGroß,Zürich\n".encode("cp1252"))
    frame = read(path)
    assert frame["stadt"].tolist() == ["Köln", "Zürich"]
    assert frame.attrs["encoding"] == "cp1252" and "--encoding" in frame.attrs["encoding_warning"]
    assert detect(path.read_bytes(), "de.csv", prefer="iso8859_15") == ("iso8859_15", None)
    # é + letter is a valid cp932 kanji, so this file is strict cp932 too; lone kanji before Latin letters give it away
    french = "ville,n\nOrléans,1\nMontréal,2\nécole,3\nGenève,4\nchâteau,5\n".encode("cp1252")
    french.decode("cp932")
    assert detect(french, "fr.csv")[0] == "cp1252"


def test_explicit_encoding_always_wins(tmp_path):
    path = write(tmp_path / "excel.csv", EXCEL_ROWS, "cp932")
    with pytest.raises(DataError, match="not valid euc_jp"):
        read(path, encoding="euc_jp")
    assert read(path, encoding="cp932", prefer="euc_jp").attrs["encoding_detected"] is False
    utf8 = tmp_path / "u.csv"
    utf8.write_bytes("a,b\né,1\n".encode())
    assert read(utf8, encoding="latin-1")["a"][0] == "Ã©"  # as asked, even when wrong


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def excel_table(rows, seed):
    cities = ["東京", "大阪", "名古屋", "札幌"]
    companies = ["㈱山田", "髙橋商店", "①番館", "東京～大阪"]
    frame = pd.DataFrame({"都市": [cities[(i * 7 + seed) % 4] for i in range(rows)],
                          "会社": [companies[(i * 3 + seed) % 4] for i in range(rows)],
                          "広さ": [20 + (i * 13 + seed) % 50 for i in range(rows)]})
    frame["価格"] = frame["広さ"] * 3 + frame["都市"].map({c: n * 10 for n, c in enumerate(cities)})
    return frame


def test_run_records_detected_encoding_and_predict_reuses_it(capsys, tmp_path):
    train_file, new_file = tmp_path / "train.csv", tmp_path / "new.csv"
    train_file.write_bytes(excel_table(40, 0).to_csv(index=False).encode("cp932"))
    new_file.write_bytes(excel_table(12, 1).to_csv(index=False).encode("cp932"))
    runs = tmp_path / "runs"
    code, _, err = run_cli(capsys, "check", train_file, "--target", "価格")
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", train_file, "--target", "価格", "--name", "jp", "--runs-dir", runs,
                           "--no-tracking")
    assert code == 0, err
    facts = Run(runs / "jp").read_json("data.json")
    assert facts["encoding"] == "cp932" and facts["encoding_detected"] is True
    assert api.reading_encoding("jp", runs) == ("auto", "cp932")

    code, out, err = run_cli(capsys, "predict", "jp", "--runs-dir", runs, "--data", new_file, "--json")
    assert code == 0, err
    assert "never seen" not in err and len(json.loads(out)["predictions"]) == 12
    code, _, err = run_cli(capsys, "evaluate", "jp", "--runs-dir", runs, "--data", new_file)
    assert code == 0, err
    code, _, err = run_cli(capsys, "predict", "jp", "--runs-dir", runs, "--data", new_file, "--encoding", "euc_jp")
    assert code == 3 and "not valid euc_jp" in err  # an explicit --encoding wins over the run's


def test_an_explicit_training_encoding_is_reused_as_is(tmp_path):
    run = Run.create(tmp_path, "explicit")
    run.write_json("data.json", {"encoding": "cp1252", "encoding_detected": False})
    assert api.reading_encoding("explicit", tmp_path) == ("cp1252", None)
    assert api.reading_encoding(tmp_path / "not-a-run", tmp_path) == ("auto", None)


def test_a_guessed_encoding_is_a_check_warning(tmp_path):
    path = tmp_path / "fr.csv"
    path.write_bytes(("ville,n\n" + "".join(f"Orléans,{i}\n" for i in range(20))).encode("cp1252"))
    report = api.check(str(path), "n")
    assert [f.details["encoding"] for f in report.warnings if f.code == "encoding"] == ["cp1252"]
