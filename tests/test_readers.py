import pandas as pd
import pytest

from modeldojo.data.readers import read, row_location
from modeldojo.errors import DataError


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n")
    with pytest.raises(DataError) as error:
        read(path)
    message = str(error.value)
    assert "rows.csv, line 4" in message and "expected 3 fields" in message and "found 4" in message


def test_undecodable_bytes_name_byte_offset_line_and_column(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,price\ncaf".encode() + b"\xe9,3\n")
    with pytest.raises(DataError) as error:
        read(path, encoding="utf-8")  # explicit; auto would detect cp1252 (tests/test_encodings.py)
    message = str(error.value)
    assert "byte offset 14" in message and "line 2, column 4" in message and "--encoding" in message
    assert read(path, encoding="latin-1")["name"][0] == "café"


@pytest.mark.parametrize("content, words", [(b"", "empty"), (b"  \n", "empty"), (b"a,b\n", "no data rows")])
def test_empty_inputs(tmp_path, content, words):
    path = tmp_path / "e.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=words):
        read(path)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path, delimiter):
    path = tmp_path / "d.csv"
    path.write_text(delimiter.join(["a", "b"]) + "\n" + delimiter.join(["1", "x y"]) + "\n"
                    + delimiter.join(["2", "z"]) + "\n")
    frame = read(path)
    assert list(frame.columns) == ["a", "b"] and frame["b"].tolist() == ["x y", "z"]


def test_jsonl_errors_name_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n')
    with pytest.raises(DataError, match=r"d.jsonl, line 3, column \d+: invalid JSON"):
        read(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2: expected a JSON object"):
        read(path)


def test_jsonl_keeps_real_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    frame = read(path)
    assert row_location(frame, 1) == "line 3"


def test_parquet_and_dataframe(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    frame.to_parquet(tmp_path / "d.parquet")
    assert read(tmp_path / "d.parquet").equals(frame)
    assert row_location(read(frame), 1) == "row 1"
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read as Parquet"):
        read(tmp_path / "broken.parquet")


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unknown file type"):
        read(tmp_path / "x.xlsx")
