"""The web app's words: every UI string lives in catalogue.json, in English and Japanese.

The language is the `lang` cookie when the user picked one with the switch (`?lang=ja`), else the browser's
Accept-Language, else English. A key missing from the catalogue is a bug the tests catch, not a blank page: it
shows as the key itself.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

LANGUAGES = ("en", "ja")
DEFAULT = "en"


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    return json.loads((Path(__file__).with_name("catalogue.json")).read_text(encoding="utf-8"))


def from_accept_language(header: str | None) -> str:
    """The best of our languages for an Accept-Language header ('ja,en-US;q=0.9' → 'ja')."""
    ranked = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
    for _, _, language in sorted(ranked):
        if language in LANGUAGES:
            return language
    return DEFAULT


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for picked in (query, cookie):
        if picked in LANGUAGES:
            return picked
    return from_accept_language(accept_language)


def translator(language: str) -> Callable[..., str]:
    words = catalogue()

    def translate(key: str, **values) -> str:
        entry = words.get(key)
        text = entry.get(language) or entry.get(DEFAULT) if entry else key
        return text.format(**values) if values else text

    return translate
