"""Person names in Japanese text: modeldojo.privacy's optional named-entity step with ja-ginza, vs patterns alone.

The set (seeded) is built here: ~260 sentences with labelled person names from templates (full name with 様/さん/殿,
surname alone, 「姓 名」 with a half- or full-width space, katakana foreign names 「スミス・ジョン様」, names in
signatures, next to phone numbers, ages and e-mail addresses, hiragana given names) and ~70 negatives that must not
be masked: place names (including ones that are also surnames: 松本市, 福岡県, 岡山駅), companies, products,
brands, job titles. Names are written inline as [[value]]. A predicted person span counts when it overlaps a
labelled name (precision); a name counts as found when a predicted span overlaps it (recall) and as fully covered
when predicted spans cover every character of it (a partial hit leaks the rest of the name).

Paths scored on the same sentences:
* patterns only: `privacy.find(text, kinds=every kind but PERSON)`, what mask() finds without a model: no names.
* model, person labels: `privacy_names.person_spans(text)` (ja_ginza's ENE "Person", spaCy/OntoNotes "PERSON").
* model, any label: every entity the model returns, i.e. what masking all entities would mask.
* privacy.find / mask: the PERSON matches of `privacy.find(text)` with the model installed: person names that
  overlap no pattern match (a phone or e-mail wins the overlap).

ja-ginza lives in its own virtual environment so the project's stays light. `modeldojo.privacy` is loaded from
src/modeldojo/privacy.py by path: `import modeldojo.privacy` runs modeldojo/__init__.py, which imports the whole
training API (scikit-learn, scipy, pyarrow, yaml, ...); privacy.py itself needs only numpy and pandas.

    python3 -m venv ~/.cache/modeldojo-bench/ginza-venv
    ~/.cache/modeldojo-bench/ginza-venv/bin/pip install ja-ginza ginza "pandas>=2.2,<3"
    ~/.cache/modeldojo-bench/ginza-venv/bin/pip install -e . --no-deps     # optional: the script loads by path
    .venv/bin/python bench/pii_ner.py                 # re-executes itself with the ginza venv's python
    ~/.cache/modeldojo-bench/ginza-venv/bin/python bench/pii_ner.py      # the same, directly
    .venv/bin/python bench/pii_ner.py --show-errors   # also print each miss and false alarm of the NER path
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GINZA_PYTHON = Path.home() / ".cache/modeldojo-bench/ginza-venv/bin/python"
# ja_ginza 5.x labels entities with ENE names ("Person"); en_core_web_sm and ginza's OntoNotes mapping use "PERSON".
PERSON_LABELS = {"Person", "PERSON"}

SURNAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木", "山口",
            "松本", "井上", "木村", "林", "斎藤", "清水", "山崎", "森", "池田", "橋本", "阿部", "石川", "山下", "中島",
            "石井", "小川", "前田", "岡田", "長谷川", "藤田", "後藤", "近藤", "村上", "遠藤", "青木", "坂本", "福田",
            "太田", "西村", "藤井", "金子", "岡本", "藤原", "中野", "三浦", "原田"]
GIVEN = ["太郎", "花子", "翔太", "陽菜", "健一", "美咲", "大輔", "由美", "拓也", "さくら", "誠", "直樹", "愛", "浩二",
         "恵子", "隆", "裕子", "蓮", "結衣", "悠斗", "明美", "和也", "真由美", "修", "彩", "亮", "智子", "聡", "優子",
         "大和", "葵", "一郎", "久美子", "健太", "舞", "はるか", "ゆうき", "美穂", "剛", "千尋"]
FOREIGN = ["スミス・ジョン", "ジョン・スミス", "マイケル・ブラウン", "エミリー・ジョンソン", "キム・ミンジュン",
           "ワン・ウェイ", "マリア・ガルシア", "デイビッド・ミラー", "アンナ・シュミット", "グエン・ヴァン・アン",
           "トーマス・ミュラー", "サラ・ウィルソン"]

FULL = "{s}{g}"
TEMPLATES = [
    "[[{s}{g}]]様よりお問い合わせがありました。",
    "担当の[[{s}]]です。よろしくお願いいたします。",
    "[[{s} {g}]]さんに確認済み",
    "[[{s}　{g}]]様（経理部）",
    "お客様名：[[{s}{g}]]",
    "[[{s}{g}]]（{age}歳）{phone}",
    "[[{s}{g}]] <{mail}>",
    "連絡先：[[{s}]]様 {phone}",
    "本日、[[{s}]]部長と打ち合わせを行いました。",
    "申込者 [[{s}{g}]] 様の書類を受領しました。",
    "[[{s}{g}]]殿\n下記の通りご請求申し上げます。",
    "以上、よろしくお願いいたします。\n[[{s}{g}]]",
    "昨日[[{s}]]さんから電話があり、明日折り返すと伝えました。",
    "会議の参加者は[[{s}]]さんと[[{s2}]]さんです。",
    "[[{s}{g}]]さんの住所変更を受け付けました。",
    "メール（{mail}）の送信者は[[{s}{g}]]さんでした。",
    "新任の[[{s}{g}]]先生が着任されました。",
    "[[{s}{g}]]が退職しました。",
    "宛先：[[{s}{g}]] 様　電話 {phone}",
    "[[{s}]]さん、{date}の件でご連絡します。",
]
FOREIGN_TEMPLATES = [
    "[[{f}]]様よりご注文をいただきました。",
    "担当は[[{f}]]さんです。",
    "[[{f}]]（{age}歳）{phone}",
    "お客様：[[{f}]] <{mail}>",
]

NEGATIVES = [
    # places, including ones that share a surname
    "東京都千代田区丸の内に本社があります。", "大阪府大阪市北区梅田で開催します。", "松本市の天気は晴れです。",
    "福岡県へ出張します。", "岡山駅で乗り換えてください。", "京都の紅葉が見頃です。", "札幌支店に異動しました。",
    "横浜港に到着しました。", "名古屋城を見学しました。", "神戸市役所で手続きをしました。", "新宿駅東口で待ち合わせ。",
    "長野県の市町村一覧", "沖縄県那覇市の天気", "北海道は雪でした。", "渋谷区役所の窓口", "富士山に登りました。",
    "中野区から転居しました。", "石川県金沢市の観光", "前橋市内の店舗", "山口県下関市で開催", "吉田町の町役場",
    "青森県産のりんご", "熊本城の修復工事", "広島空港から出発します。",
    # companies, organisations
    "トヨタ自動車の決算発表", "ソニーグループの新製品", "任天堂が新作を発表しました。", "株式会社日立製作所との契約",
    "パナソニックの冷蔵庫を購入しました。", "楽天市場で注文しました。", "三菱UFJ銀行に振り込みました。",
    "本田技研工業の工場見学", "株式会社山田商事からの請求書", "鈴木自動車工業の部品", "日本郵便から荷物が届きました。",
    "東京大学の入学式", "厚生労働省の発表によると", "NTTドコモの料金プラン", "セブンイレブンで支払いました。",
    "ヤマト運輸の配達状況", "佐川急便で発送しました。", "武田薬品工業の株価",
    # products, brands, works
    "iPhone 15を購入しました。", "プレイステーション5の在庫", "カローラの新型モデル", "カップヌードルを食べました。",
    "ポカリスエットを飲みました。", "ユニクロのダウンジャケット", "ドラゴンクエストの新作", "ポケモンのぬいぐるみ",
    "Windows 11にアップデートしました。", "エクセルで集計しました。", "ウォークマンの充電",
    # roles, generic text, dates
    "部長と課長が出席しました。", "お客様からのお問い合わせ", "担当者に確認します。", "営業部の会議は3時からです。",
    "令和6年1月5日に更新しました。", "注文番号 ORD-2024-000123", "合計12,800円（税込）", "月曜日に納品予定です。",
    "社長が挨拶しました。", "新入社員研修のお知らせ", "システムメンテナンスのお知らせ", "会員登録ありがとうございます。",
    "明日は雨の予報です。", "在庫が不足しています。", "配送先の住所を変更しました。", "契約の更新手続き",
    "山と川の写真", "田んぼと森の風景",
]

MARK = re.compile(r"\[\[(.*?)\]\]", re.S)


def _phone(rng: random.Random) -> str:
    return rng.choice([f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
                       f"03-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
                       f"０８０－{rng.randint(1000, 9999)}－{rng.randint(1000, 9999)}".translate(
                           str.maketrans("0123456789", "０１２３４５６７８９"))])


def _mail(rng: random.Random) -> str:
    user = rng.choice(["taro", "h.yamada", "info", "k_tanaka", "sales"])
    return user + "@" + rng.choice(["example.jp", "example.co.jp"])


def parse(line: str) -> dict:
    text, spans, position = [], [], 0
    for m in MARK.finditer(line):
        text.append(line[position:m.start()])
        start = sum(map(len, text))
        text.append(m.group(1))
        spans.append((start, start + len(m.group(1))))
        position = m.end()
    text.append(line[position:])
    return {"text": "".join(text), "spans": spans}


def build_set(seed: int = 0, per_template: int = 11) -> list[dict]:
    rng = random.Random(seed)
    lines = []
    for template in TEMPLATES:
        for _ in range(per_template):
            s, s2 = rng.sample(SURNAMES, 2)
            lines.append(template.format(s=s, s2=s2, g=rng.choice(GIVEN), age=rng.randint(20, 79), phone=_phone(rng),
                                         mail=_mail(rng), date=f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日"))
    for template in FOREIGN_TEMPLATES:
        for _ in range(per_template):
            lines.append(template.format(f=rng.choice(FOREIGN), age=rng.randint(20, 79), phone=_phone(rng),
                                         mail=_mail(rng)))
    return [parse(line) for line in lines] + [{"text": line, "spans": []} for line in NEGATIVES]


def load_privacy():
    """modeldojo.privacy (and privacy_names) without running modeldojo/__init__.py (see the docstring): an empty
    package object pointing at src/modeldojo, then the two modules imported from it."""
    import types

    package = types.ModuleType("modeldojo")
    package.__path__ = [str(ROOT / "src/modeldojo")]
    sys.modules.setdefault("modeldojo", package)
    import importlib

    return importlib.import_module("modeldojo.privacy"), importlib.import_module("modeldojo.privacy_names")


def _covered(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Every non-space character of text[start:end] inside a predicted span (「木村　健一」 as 木村 + 健一 counts)."""
    return all(text[i].isspace() or any(s <= i < e for s, e in spans) for i in range(start, end))


def score(rows: list[dict], predictions: list[list[tuple[int, int]]]) -> dict:
    predicted = correct = gold = found = covered = negatives_hit = 0
    for row, spans in zip(rows, predictions):
        predicted += len(spans)
        correct += sum(any(s < ge and gs < e for gs, ge in row["spans"]) for s, e in spans)
        for gs, ge in row["spans"]:
            gold += 1
            found += any(s < ge and gs < e for s, e in spans)
            covered += _covered(row["text"], gs, ge, spans)
        negatives_hit += not row["spans"] and bool(spans)
    return {"P": correct / predicted if predicted else float("nan"), "R": found / gold, "cover": covered / gold,
            "predicted": predicted, "gold": gold, "neg_hit": negatives_hit}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--here", action="store_true", help="do not re-execute with the ginza venv's python")
    args = parser.parse_args()
    if importlib.util.find_spec("spacy") is None and not args.here:
        if not GINZA_PYTHON.exists():
            print(f"no {GINZA_PYTHON} (see the install commands in this file's docstring); running patterns only")
        else:
            os.execv(str(GINZA_PYTHON), [str(GINZA_PYTHON), __file__, *sys.argv[1:]])

    privacy, names = load_privacy()
    rows = build_set(args.seed)
    positives = sum(bool(r["spans"]) for r in rows)
    negatives = len(rows) - positives
    print(f"{len(rows)} sentences ({positives} with names, {negatives} negatives), "
          f"{sum(len(r['spans']) for r in rows)} labelled names; python {sys.executable}")

    pattern_kinds_only = privacy.KINDS[:-1]  # everything but PERSON: what mask() finds without a model
    started = time.perf_counter()
    patterns = [[(m.start, m.end) for m in privacy.find(r["text"], pattern_kinds_only)] for r in rows]
    pattern_ms = (time.perf_counter() - started) * 1000 / len(rows)
    pattern_kinds = Counter(m.kind for r in rows for m in privacy.find(r["text"], pattern_kinds_only))

    started = time.perf_counter()
    pipeline = names.pipeline()
    load_s = time.perf_counter() - started
    meta = {} if pipeline is None else pipeline.meta
    model = f"{meta['lang']}_{meta['name']} {meta['version']}" if meta else "none"
    names.person_spans("ウォームアップ")  # first call pays one-off lazy initialisation
    started = time.perf_counter()
    person = [names.person_spans(r["text"]) for r in rows]
    ner_ms = (time.perf_counter() - started) * 1000 / len(rows)
    ents = [list(pipeline(r["text"]).ents) if pipeline is not None else [] for r in rows]
    anything = [[(e.start_char, e.end_char) for e in row] for row in ents]
    # What mask() does with a model installed: patterns first, person names only where they overlap none of them.
    started = time.perf_counter()
    masked = [[(m.start, m.end) for m in privacy.find(r["text"]) if m.kind == "PERSON"] for r in rows]
    mask_ms = (time.perf_counter() - started) * 1000 / len(rows)
    print(f"spaCy model: {model} (load {load_s:.1f} s); pattern kinds found: {dict(pattern_kinds)}")
    labels_pos = Counter(e.label_ for row, r in zip(ents, rows) if r["spans"] for e in row)
    labels_neg = Counter(e.label_ for row, r in zip(ents, rows) if not r["spans"] for e in row)
    print(f"entity labels on sentences with names: {dict(labels_pos.most_common(12))}")
    print(f"entity labels on negatives: {dict(labels_neg.most_common(12))}")

    table = [("patterns only (no model)", score(rows, patterns), pattern_ms),
             ("model: person labels (privacy_names.person_spans)", score(rows, person), ner_ms),
             ("model: any label", score(rows, anything), ner_ms),
             ("privacy.find / mask: patterns + person names, patterns win overlaps", score(rows, masked), mask_ms)]
    print(f"\n| path | names | predicted | precision | recall (overlap) | recall (full cover) | negatives masked "
          f"(of {negatives}) | ms / sentence |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s, ms in table:
        print(f"| {name} | {s['gold']} | {s['predicted']} | {s['P']:.3f} | {s['R']:.3f} | {s['cover']:.3f} | "
              f"{s['neg_hit']} | {ms:.2f} |")

    if args.show_errors:
        print("\nNER (Person) misses and false alarms:")
        for row, spans, all_ents in zip(rows, masked, ents):
            missed = [row["text"][gs:ge] for gs, ge in row["spans"] if not _covered(row["text"], gs, ge, spans)]
            false = [row["text"][s:e] for s, e in spans if not any(s < ge and gs < e for gs, ge in row["spans"])]
            if missed or false:
                print(f"  {row['text']!r}: missed/partial {missed} false {false} "
                      f"ents {[(e.label_, e.text) for e in all_ents]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
