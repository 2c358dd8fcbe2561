"""modeldojo.privacy: PII found on normalised text, masked in the original; fast (no models, no network)."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from modeldojo import privacy
from modeldojo.privacy import find, mask, mask_frame, mask_json, mask_value, scan_frame


def valid_my_number(body: str = "12345678901") -> str:
    """The official check digit, computed independently of the module under test."""
    weights = [6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2]  # Q_n for n = 11 … 1, i.e. left to right over the 11 digits
    remainder = sum(int(d) * w for d, w in zip(body, weights)) % 11
    return body + str(0 if remainder <= 1 else 11 - remainder)


def kinds_of(text: str) -> list[tuple[str, str]]:
    return [(m.kind, m.text) for m in find(text)]


def test_email_glued_to_japanese():
    assert kinds_of("連絡先はtaro@example.jpです") == [("EMAIL", "taro@example.jp")]
    assert mask("連絡先はtaro@example.jpです") == "連絡先は<EMAIL>です"
    assert kinds_of("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐへ") == [("EMAIL", "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ")]


@pytest.mark.parametrize("text", ["０９０－１２３４－５６７８", "０９０ー１２３４ー５６７８", "090-1234-5678", "09012345678",
                                  "(03) 1234-5678", "03(1234)5678", "03.1234.5678", "0120-123-456", "0800-123-4567",
                                  "+81-90-1234-5678", "+81 3 1234 5678", "+81 (0)3-1234-5678", "+1 415 555 0100"])
def test_phone_formats(text):
    assert kinds_of(f"電話{text}まで") == [("PHONE", text)]


@pytest.mark.parametrize("text", ["2024-01-05", "05.01.2024", "¥1,234,567", "12,800円", "〒100-0001", "〒060-0001",
                                  "ORD09012345678", "ISBN 978-4-06-123456-7", "ISBN 0-306-40615-2", "090-1234-567",
                                  "version 1.2.3.4", "1.2.3.4.5", "Python 3.11.7", "12:30:45", "std::vector",
                                  "MAC 00:1A:2B:3C:4D:5E", "注文番号 20240105123456", "+12345"])
def test_look_alikes_not_matched(text):
    assert find(text) == []


def test_my_number_check_digit():
    good = valid_my_number()
    bad = good[:11] + str((int(good[11]) + 1) % 10)
    assert kinds_of(f"個人番号{good}") == [("MY_NUMBER", good)]
    spaced = f"{good[:4]} {good[4:8]} {good[8:]}"
    assert kinds_of(f"マイナンバー：{spaced}") == [("MY_NUMBER", spaced)]
    assert find(f"個人番号{bad}") == []
    assert privacy.my_number_valid(good) and not privacy.my_number_valid(bad)


def test_credit_card_luhn_and_prefix():
    assert kinds_of("card 4111 1111 1111 1111 exp 12/27") == [("CREDIT_CARD", "4111 1111 1111 1111")]
    assert kinds_of("Amex 3782-822463-10005") == [("CREDIT_CARD", "3782-822463-10005")]
    assert kinds_of("JCB 3530111333300000で決済") == [("CREDIT_CARD", "3530111333300000")]
    assert find("card 4111 1111 1111 1112") == []  # Luhn fails
    assert find("card 9111 1111 1111 1113") == []  # Luhn passes, no known issuer prefix
    assert kinds_of("4111 1111 1111 1111 2025年") == [("CREDIT_CARD", "4111 1111 1111 1111")]


def test_ip_addresses():
    assert kinds_of("サーバー192.168.0.1に接続") == [("IP_ADDRESS", "192.168.0.1")]
    assert kinds_of("IP：2001:db8::1からのアクセス") == [("IP_ADDRESS", "2001:db8::1")]
    assert find("build 1.2.3.4.5") == [] and find("256.1.1.1") == []


def test_url_credentials_mask_only_the_credentials():
    text = "DATABASE_URL=postgres://admin:P@ss%21@db.example.com:5432/app"
    assert mask(text) == "DATABASE_URL=postgres://<URL_CREDENTIALS>@db.example.com:5432/app"
    assert mask("redis://:secret@cache:6379/0") == "redis://<URL_CREDENTIALS>@cache:6379/0"
    assert find("https://example.com/user@x") == []


def test_original_text_outside_matches_is_unchanged():
    text = "ｶﾞｲﾄﾞ㌔は taro@example.com と\n０９０－１２３４－５６７８ です①"
    masked = mask(text)
    assert masked == "ｶﾞｲﾄﾞ㌔は <EMAIL> と\n<PHONE> です①"
    for match in find(text):
        assert text[match.start:match.end] == match.text
    assert mask("ﾃｽﾄ only, no PII 123") == "ﾃｽﾄ only, no PII 123"


def test_priority_resolves_overlaps():
    # the password part would also look like an e-mail local part; the credentials win
    assert [m.kind for m in find("https://u:pw@mail.example.com/")] == ["URL_CREDENTIALS"]
    assert [m.kind for m in find("mail a@example.jp tel 03-1234-5678", kinds=["PHONE"])] == ["PHONE"]
    with pytest.raises(ValueError):
        find("x", kinds=["SSN"])


def test_pseudonyms_stable_and_key_dependent():
    first = mask("call 090-1234-5678", mode="pseudonym", key=b"k1")
    assert first == mask("call 090-1234-5678", mode="pseudonym", key=b"k1")
    assert first != mask("call 090-1234-5678", mode="pseudonym", key=b"k2")
    assert first.startswith("call <PHONE:") and len(first) == len("call <PHONE:12345678>")
    # formatting does not change the pseudonym: same number, same token
    assert mask("+81 90 1234 5678", mode="pseudonym", key=b"k1") == first.removeprefix("call ")
    with pytest.raises(ValueError):
        mask("x", mode="pseudonym")
    with pytest.raises(ValueError):
        mask("x", mode="hash")


def test_mask_value_numbers():
    good = valid_my_number()
    assert mask_value(int(good)) == "<MY_NUMBER>"
    assert mask_value(np.int64(4111111111111111)) == "<CREDIT_CARD>"
    assert mask_value(4111111111111112) == 4111111111111112
    assert mask_value(42) == 42 and mask_value(3.5) == 3.5 and mask_value(True) is True
    assert mask_value(None) is None and np.isnan(mask_value(float("nan")))


def test_mask_frame_and_json():
    good = valid_my_number()
    frame = pd.DataFrame({"note": ["mail taro@example.jp", None, "no pii"], "id": [int(good), 1, 2],
                          "amount": [1.5, 2.0, np.nan]})
    masked = mask_frame(frame)
    assert masked["note"].tolist()[0] == "mail <EMAIL>" and masked["note"].tolist()[1] is None
    assert masked["id"].tolist() == ["<MY_NUMBER>", 1, 2]
    assert masked["amount"].equals(frame["amount"]) and frame["note"][0] == "mail taro@example.jp"  # a copy
    assert mask_frame(frame, columns=["id"])["note"][0] == "mail taro@example.jp"
    log = {"request": {"messages": [{"content": "私の電話は０３－１２３４－５６７８"}], "n": 3}, "ok": True}
    assert mask_json(log) == {"request": {"messages": [{"content": "私の電話は<PHONE>"}], "n": 3}, "ok": True}


def test_scan_frame_reports_no_values():
    frame = pd.DataFrame({"contact": ["taro@example.jp", "x", "tel 090-1234-5678", "hanako@example.com"],
                          "plain": ["a", "b", "c", "d"]})
    report = scan_frame(frame)
    assert report == [{"column": "contact", "kinds": {"EMAIL": 2, "PHONE": 1}, "cells": 3, "rows_scanned": 4,
                       "examples": [0, 2, 3]}]
    text = json.dumps(report)
    assert "example" not in text.replace('"examples"', "") and "1234" not in text
    big = pd.DataFrame({"contact": ["taro@example.jp"] * 50})
    assert scan_frame(big, sample_rows=10)[0]["rows_scanned"] == 10


def test_entities_never_downloads():
    assert isinstance(privacy.entities("山田太郎は東京に住んでいます"), list)


class _Entity:
    def __init__(self, label, start, end):
        self.label_, self.start_char, self.end_char = label, start, end


class _StubModel:
    """Stands in for ja_ginza: people, a city, and a phone number it wrongly calls a person."""

    LABELS = {"山田太郎": "Person", "山田 太郎": "Person", "東京": "City", "090-1234-5678": "Person"}
    calls: list = []

    def pipe(self, texts):
        for text in texts:
            self.calls.append(len(text.encode("utf-8")))
            document = type("Doc", (), {})()
            document.ents = [_Entity(label, m.start(), m.end()) for word, label in self.LABELS.items()
                             for m in re.finditer(re.escape(word), text)]
            yield document


def test_names_are_masked_with_an_installed_model_and_patterns_win_overlaps(monkeypatch):
    from modeldojo import privacy_names

    monkeypatch.setattr(privacy_names, "pipeline", lambda: _StubModel())
    text = "山田太郎様（東京）から電話 090-1234-5678 がありました"
    assert privacy.mask(text) == "<PERSON>様（東京）から電話 <PHONE> がありました"  # a city is not personal data
    key = b"k" * 16
    assert privacy.mask("山田 太郎", "pseudonym", key) == privacy.mask("山田太郎", "pseudonym", key)
    assert privacy.mask(text, kinds=["PHONE"]) == "山田太郎様（東京）から電話 <PHONE> がありました"
    assert [m.kind for m in privacy.entities(text)] == ["PERSON", "PERSON"]  # the model's own view, unfiltered
    _StubModel.calls.clear()
    long = "山田太郎様からです。" * 5000  # 150,000 bytes: over SudachiPy's 49,149-byte limit in one piece
    masked = privacy.mask(long)
    assert masked.count("<PERSON>") == 5000 and max(_StubModel.calls) <= privacy_names.MAX_CHUNK_BYTES


def test_without_a_model_names_are_not_looked_for_and_a_broken_model_is_skipped(monkeypatch):
    import sys
    import types

    from modeldojo import privacy_names

    monkeypatch.setattr(privacy_names, "pipeline", lambda: None)
    assert privacy.mask("山田太郎様") == "山田太郎様"
    monkeypatch.undo()
    # A spaCy whose installed ja_ginza fails to load (built for another spaCy): reported, the step is skipped.
    fake = types.ModuleType("spacy")
    fake.util = types.SimpleNamespace(get_installed_models=lambda: ["ja_ginza"])
    fake.load = lambda name: (_ for _ in ()).throw(OSError("built for another spaCy"))
    monkeypatch.setitem(sys.modules, "spacy", fake)
    privacy_names.pipeline.cache_clear()
    try:
        with pytest.warns(UserWarning, match="did not load"):
            assert privacy_names.pipeline() is None
        assert privacy.mask("山田太郎様 090-1234-5678") == "山田太郎様 <PHONE>"
    finally:
        privacy_names.pipeline.cache_clear()


def test_a_name_around_a_phone_keeps_its_own_parts_masked_and_odd_text_does_not_fail(monkeypatch):
    from modeldojo import privacy_names

    class Greedy(_StubModel):  # a model that swallows the phone number into the name
        LABELS = {"山田太郎 090-1234-5678 花子": "Person"}

    monkeypatch.setattr(privacy_names, "pipeline", lambda: Greedy())
    assert privacy.mask("山田太郎 090-1234-5678 花子さん") == "<PERSON> <PHONE> <PERSON>さん"
    assert privacy_names.chunks("a\ud800b。" * 3, limit=8)  # a lone surrogate (valid JSON) is measured, not fatal
    assert privacy.mask("山田太郎", kinds=privacy.PATTERN_KINDS) == "山田太郎"  # the log filter's cheap path
