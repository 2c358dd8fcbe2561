"""PII detection: modeldojo.privacy vs Microsoft Presidio on a labelled English + Japanese set built here.

The set (seeded, ~500 sentences) has three parts: synthetic templates filled with generated values (e-mails,
Japanese and international phones in many formats, valid My Numbers, Luhn-valid cards of every listed brand,
IPv4/IPv6, URLs with credentials; ASCII and full-width), hand-written hard cases (text glued to Japanese,
full-width digits and dashes, katakana names next to numbers, line breaks), and look-alike negatives (dates,
prices, postal codes 〒100-0001, order ids, version numbers, ISBNs, times). Entities are written inline as
[[KIND|value]] and turned into labelled spans. A prediction counts when it overlaps a labelled span of the same
kind; precision and recall are per kind.

Peer: Presidio (presidio-analyzer) in its own virtual environment, run as a subprocess on the same sentences
(JSON in, JSON out). Presidio loads a spaCy model through its NLP engine and would download one; here it gets
`spacy.blank("en")` saved to disk, so only its pattern/validator recognizers act (the ones that cover these
kinds). Its phone recognizer is given the JP region as well as its defaults, as a Japanese user would configure
it. Presidio has no My Number or URL-credential recognizer: those columns read n/a.

    python3 -m venv ~/.cache/modeldojo-bench/presidio-venv
    ~/.cache/modeldojo-bench/presidio-venv/bin/pip install presidio-analyzer
    .venv/bin/python bench/pii.py                 # ours + Presidio, a few seconds
    .venv/bin/python bench/pii.py --no-peer       # ours alone
    .venv/bin/python bench/pii.py --show-errors   # print each miss and false alarm of ours
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modeldojo import privacy

PRESIDIO_PYTHON = Path.home() / ".cache/modeldojo-bench/presidio-venv/bin/python"
BLANK_MODEL = Path.home() / ".cache/modeldojo-bench/presidio-blank-en"
PRESIDIO_KINDS = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD",
                  "IP_ADDRESS": "IP_ADDRESS"}

# ------------------------------------------------------------------ value generators

FULL_WIDTH = str.maketrans("0123456789-@.()+", "０１２３４５６７８９－＠．（）＋")


def my_number(rng: random.Random) -> str:
    body = "".join(rng.choice("0123456789") for _ in range(11))
    total = sum(int(body[11 - n]) * (n + 1 if n <= 6 else n - 5) for n in range(1, 12))
    remainder = total % 11
    return body + str(0 if remainder <= 1 else 11 - remainder)


def card(rng: random.Random) -> tuple[str, list[int]]:
    prefix, length, groups = rng.choice([("4", 16, [4, 4, 4, 4]), ("4", 13, [13]), ("5" + rng.choice("12345"), 16, [4, 4, 4, 4]),
                                         ("2" + str(rng.randint(221, 720)), 16, [4, 4, 4, 4]), ("3" + rng.choice("47"), 15, [4, 6, 5]),
                                         (str(rng.randint(3528, 3589)), 16, [4, 4, 4, 4]), ("36", 14, [4, 6, 4]),
                                         ("6011", 16, [4, 4, 4, 4]), ("65", 16, [4, 4, 4, 4])])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if privacy.luhn_valid(body + check):
            return body + check, groups
    raise AssertionError


def grouped(digits: str, groups: list[int], separator: str) -> str:
    parts, position = [], 0
    for size in groups:
        parts.append(digits[position:position + size])
        position += size
    return separator.join(parts)


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    n1 = lambda n: str(rng.randint(1, 9)) + d(n - 1)  # noqa: E731  (subscriber numbers do not start with 0)
    return rng.choice([
        f"090-{n1(4)}-{d(4)}", f"080-{n1(4)}-{d(4)}", f"070 {n1(4)} {d(4)}", f"090{n1(4)}{d(4)}", f"03-{n1(4)}-{d(4)}",
        f"06-{n1(4)}-{d(4)}", f"045-{n1(3)}-{d(4)}", f"0{rng.randint(1, 9)}{rng.randint(1, 9)}{rng.randint(1, 9)}-{n1(2)}-{d(4)}",
        f"(03) {n1(4)}-{d(4)}", f"03({n1(4)}){d(4)}", f"0120-{n1(3)}-{d(3)}", f"0800-{n1(3)}-{d(4)}", f"090.{n1(4)}.{d(4)}",
        f"+81-90-{n1(4)}-{d(4)}", f"+81 3 {n1(4)} {d(4)}", f"+81 (0)3-{n1(4)}-{d(4)}", f"+1 415 {n1(3)} {d(4)}",
        f"+44 20 {n1(4)} {d(4)}", f"0{rng.randint(1, 9)}{n1(8)}",
    ])


def email(rng: random.Random) -> str:
    user = rng.choice(["taro", "hanako.yamada", "j.smith", "sales+jp", "info", "k_tanaka", "support-team", "a1b2"])
    domain = rng.choice(["example.jp", "example.co.jp", "mail.example.com", "example.org", "ex-ample.net", "sub.example.ac.jp"])
    return f"{user}@{domain}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.75:
        return ".".join(str(rng.randint(0, 255)) for _ in range(4))
    return rng.choice(["2001:db8::1", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2400:4050:a0:1::5"])


def credentials(rng: random.Random) -> str:
    return f"{rng.choice(['admin', 'app', 'deploy', 'u'])}:{rng.choice(['s3cret', 'P@ss%21word', 'hunter2', 'xK9-zz'])}"


# ------------------------------------------------------------------ the labelled set

TEMPLATES = {
    "EMAIL": ["Please contact [[EMAIL|{v}]] for details.", "連絡先は[[EMAIL|{v}]]です。", "メール：[[EMAIL|{v}]]まで",
              "From: Taro <[[EMAIL|{v}]]>", "担当者（[[EMAIL|{v}]]）へ転送してください"],
    "PHONE": ["Call me at [[PHONE|{v}]].", "電話番号は[[PHONE|{v}]]です", "TEL:[[PHONE|{v}]]", "お問い合わせ [[PHONE|{v}]] まで",
              "携帯[[PHONE|{v}]]にご連絡ください", "phone: [[PHONE|{v}]], fax: none"],
    "MY_NUMBER": ["マイナンバー：[[MY_NUMBER|{v}]]", "個人番号は[[MY_NUMBER|{v}]]です", "My Number [[MY_NUMBER|{v}]] on file."],
    "CREDIT_CARD": ["Card: [[CREDIT_CARD|{v}]] exp 12/27", "カード番号[[CREDIT_CARD|{v}]]で決済", "paid with [[CREDIT_CARD|{v}]]."],
    "IP_ADDRESS": ["Login from [[IP_ADDRESS|{v}]] failed", "接続元IP：[[IP_ADDRESS|{v}]]からのアクセス", "host [[IP_ADDRESS|{v}]] is down"],
    "URL_CREDENTIALS": ["DATABASE_URL=postgres://[[URL_CREDENTIALS|{v}]]@db.example.com:5432/app",
                        "接続先 https://[[URL_CREDENTIALS|{v}]]@example.com/api を使用", "redis://[[URL_CREDENTIALS|{v}]]@cache:6379/0"],
}

HARD = [
    "連絡先はtaro@example.jpです → 連絡先は[[EMAIL|taro@example.jp]]です",
    "[[EMAIL|ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ]]へ",
    "ｶﾞｲﾄﾞは[[EMAIL|guide@example.com]]まで",
    "電話：[[PHONE|０９０－１２３４－５６７８]]",
    "[[PHONE|０３ー１２３４ー５６７８]]（代表）",
    "タナカ[[PHONE|09012345678]]",
    "ヤマダタロウ（35歳）[[PHONE|080-2345-6789]]",
    "携帯:[[PHONE|070‐1111‐2222]]\n自宅:[[PHONE|042-123-4567]]",
    "TEL [[PHONE|03-1234-5678]] / FAX [[PHONE|03-1234-5679]]",
    "電話[[PHONE|03-1234-5678]]、メール[[EMAIL|info@example.co.jp]]",
    "マイナンバー[[MY_NUMBER|{mn_full}]]を提出",
    "個人番号:\n[[MY_NUMBER|{mn_space}]]",
    "カード[[CREDIT_CARD|{card_full}]]でお支払い",
    "サーバー[[IP_ADDRESS|192.168.10.20]]に接続",
    "[[IP_ADDRESS|10.0.0.1]]:8080 returned 500",
    "ssh [[EMAIL|deploy@example.org]] and then ping [[IP_ADDRESS|172.16.0.5]]",
    "mysql://[[URL_CREDENTIALS|root:pa55word]]@[[IP_ADDRESS|127.0.0.1]]/db",
    "mail [[EMAIL|a.b-c+d@mail.example.co.jp]], tel [[PHONE|+81 90 1234 5678]]",
    "請求先：山田太郎様　[[PHONE|０６（１２３４）５６７８]]",
    "Bob's card [[CREDIT_CARD|4111 1111 1111 1111]] 2025年12月まで",
]

NEGATIVES = [
    "会議は2024-01-05 10:30に開始します", "Due date: 2024/01/05", "令和6年1月5日に更新", "The meeting is on 05.01.2024.",
    "合計¥12,800（税込）", "Total: $1,234.56", "価格 12,800円", "売上 1,234,567,890円", "〒100-0001 東京都千代田区",
    "〒060-0001 札幌市", "Postal code 150-0002", "注文番号 ORD-2024-000123", "Order #A12345678", "order id 20240105123456",
    "version 1.2.3.4", "Python 3.11.7 and numpy 2.4.6", "build 1.2.3.4.5", "バージョン10.0.19045.3803", "v2.0.1 released",
    "ISBN 978-4-06-123456-7", "ISBN 4-06-123456-7", "ISBN 0-306-40615-2", "at 12:30:45 UTC", "std::vector<int> v;",
    "気温は-3.5度", "電話番号未登録", "口座番号 1234567", "社員番号 00012345", "部屋番号 0305", "shipped 3 of 12 items",
    "MAC 00:1A:2B:3C:4D:5E", "sha 3f9a1c2b7d", "価格は1万2千円", "期間 2024-01-05〜2024-02-05", "lot 2024-0105-7788",
    "score 0.95 ± 0.01", "座標 35.6812, 139.7671", "¥ 1 234 567", "year 1999-2003", "page 12-15",
]


def build_set(seed: int = 0, per_kind: int = 60) -> list[dict]:
    rng = random.Random(seed)
    raw: list[str] = []
    makers = {"EMAIL": email, "PHONE": phone, "IP_ADDRESS": ip, "URL_CREDENTIALS": credentials}
    for kind, templates in TEMPLATES.items():
        for index in range(per_kind):
            if kind == "MY_NUMBER":
                digits = my_number(rng)
                value = rng.choice([digits, grouped(digits, [4, 4, 4], " "), grouped(digits, [4, 4, 4], "-")])
            elif kind == "CREDIT_CARD":
                digits, groups = card(rng)
                value = rng.choice([digits, grouped(digits, groups, " "), grouped(digits, groups, "-")])
            else:
                value = makers[kind](rng)
            if kind != "URL_CREDENTIALS" and rng.random() < 0.2:
                value = value.translate(FULL_WIDTH)  # full-width digits and symbols, as typed with a Japanese IME
            raw.append(templates[index % len(templates)].replace("{v}", value))
    for line in HARD:
        line = line.split(" → ")[-1]
        digits = my_number(rng)
        card_digits, _ = card(rng)
        raw.append(line.replace("{mn_full}", digits).replace("{mn_space}", grouped(digits, [4, 4, 4], " "))
                   .replace("{card_full}", card_digits))
    raw += NEGATIVES
    # Random 12-digit order numbers: about 1 in 11 pass the My Number check digit by chance; kept, not filtered,
    # because that is what a real table of order ids does to a check-digit validator.
    raw += [f"注文番号 {rng.randint(10**11, 10**12 - 1)} を発送しました" for _ in range(30)]
    raw += [f"伝票 {rng.randint(10**13, 10**14 - 1)}" for _ in range(20)]
    return [parse(line) for line in raw]


MARK = re.compile(r"\[\[([A-Z_]+)\|(.*?)\]\]", re.S)


def parse(line: str) -> dict:
    text, spans, position = [], [], 0
    for m in MARK.finditer(line):
        text.append(line[position:m.start()])
        start = sum(map(len, text))
        text.append(m.group(2))
        spans.append((m.group(1), start, start + len(m.group(2))))
        position = m.end()
    text.append(line[position:])
    return {"text": "".join(text), "spans": spans}


# ------------------------------------------------------------------ the peer

PRESIDIO_RUNNER = r"""
import json, sys, spacy
from pathlib import Path
blank = Path(sys.argv[2])
if not blank.exists():
    spacy.blank("en").to_disk(blank)  # a tokenizer only: nothing to download
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_analyzer.predefined_recognizers import PhoneRecognizer
engine = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
                                              "models": [{"lang_code": "en", "model_name": str(blank)}]}).create_engine()
registry = RecognizerRegistry()
registry.load_predefined_recognizers(nlp_engine=engine)
registry.remove_recognizer("PhoneRecognizer")
registry.add_recognizer(PhoneRecognizer(supported_regions=("JP", "US", "UK", "DE", "FR", "IL", "IN", "CA", "BR")))
analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
texts = json.load(open(sys.argv[1]))
out = [[(r.entity_type, r.start, r.end) for r in analyzer.analyze(text=t, language="en")] for t in texts]
json.dump(out, sys.stdout)
"""


def run_presidio(texts: list[str]) -> list[list[tuple[str, int, int]]] | str:
    if not PRESIDIO_PYTHON.exists():
        return f"no {PRESIDIO_PYTHON} (see the install commands in this file's docstring)"
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "in.json").write_text(json.dumps(texts, ensure_ascii=False))
        (Path(folder) / "runner.py").write_text(PRESIDIO_RUNNER)
        done = subprocess.run([str(PRESIDIO_PYTHON), str(Path(folder) / "runner.py"), str(Path(folder) / "in.json"),
                               str(BLANK_MODEL)], capture_output=True, text=True, timeout=900)
    if done.returncode:
        return "Presidio failed: " + done.stderr[-2000:]
    return [[(PRESIDIO_KINDS[t], s, e) for t, s, e in row if t in PRESIDIO_KINDS] for row in json.loads(done.stdout)]


# ------------------------------------------------------------------ scoring

def score(rows: list[dict], predictions: list[list[tuple[str, int, int]]]) -> dict[str, tuple[float, float, int, int]]:
    overlaps = lambda a, b: a[0] == b[0] and a[1] < b[2] and b[1] < a[2]  # noqa: E731
    result = {}
    for kind in privacy.KINDS:
        predicted = correct = gold = found = 0
        for row, row_predictions in zip(rows, predictions):
            ours = [p for p in row_predictions if p[0] == kind]
            truth = [s for s in row["spans"] if s[0] == kind]
            predicted += len(ours)
            correct += sum(any(overlaps(p, s) for s in truth) for p in ours)
            gold += len(truth)
            found += sum(any(overlaps(p, s) for p in ours) for s in truth)
        result[kind] = (correct / predicted if predicted else float("nan"), found / gold if gold else float("nan"),
                        predicted, gold)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args()
    rows = build_set(args.seed)
    started = time.perf_counter()
    ours = [[(m.kind, m.start, m.end) for m in privacy.find(row["text"])] for row in rows]
    ours_seconds = time.perf_counter() - started
    print(f"{len(rows)} sentences, {sum(len(r['spans']) for r in rows)} labelled entities; ours {ours_seconds:.2f} s")
    if args.show_errors:
        for row, predicted in zip(rows, ours):
            if sorted(predicted) != sorted(tuple(s) for s in row["spans"]):
                print(f"  {row['text']!r}\n    gold {row['spans']}\n    ours {predicted}")
    peer = None if args.no_peer else run_presidio([row["text"] for row in rows])
    if isinstance(peer, str):
        print(peer)
        peer = None
    ours_score = score(rows, ours)
    peer_score = score(rows, peer) if peer else None
    print(f"\n{'kind':<16} {'gold':>5} | {'ours P':>7} {'ours R':>7} | {'Presidio P':>10} {'Presidio R':>10}")
    for kind in privacy.KINDS:
        p, r, _, gold = ours_score[kind]
        peer_text = "n/a", "n/a"
        if peer_score and kind in PRESIDIO_KINDS.values():
            peer_text = tuple(f"{x:.3f}" for x in peer_score[kind][:2])
        print(f"{kind:<16} {gold:>5} | {p:>7.3f} {r:>7.3f} | {peer_text[0]:>10} {peer_text[1]:>10}")


if __name__ == "__main__":
    sys.exit(main())
