"""Write the Zaragoza construction-company FAQ (503 English question/answer pairs with categories, CC-BY-4.0, from
the `zaragoza-construction-faq` package) to data/faq.jsonl in the Alpaca layout, plus data/faq_questions.jsonl
(ten questions without answers, for `dojo predict`).

    .venv/bin/python examples/faq_data.py && .venv/bin/dojo train data/faq.jsonl --task chat --name faq-bot
"""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    package = Path(next(iter(importlib.util.find_spec("zaragoza_construction_faq").submodule_search_locations)))
    rows = [json.loads(line) for line in (package / "data" / "faq-en.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    (ROOT / "data").mkdir(exist_ok=True)
    with open(ROOT / "data" / "faq.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps({"instruction": row["q"], "output": row["a"], "category": row["category"]},
                                 ensure_ascii=False) + "\n")
    with open(ROOT / "data" / "faq_questions.jsonl", "w", encoding="utf-8") as out:
        for row in rows[::50]:
            out.write(json.dumps({"instruction": row["q"]}, ensure_ascii=False) + "\n")
    print(f"data/faq.jsonl: {len(rows)} question/answer pairs; data/faq_questions.jsonl: {len(rows[::50])} questions")
