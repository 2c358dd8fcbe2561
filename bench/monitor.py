"""Drift detection and CBPE bench: modeldojo.monitoring vs Evidently 0.7.23 (its defaults).

Data: a synthetic 12-column table, generated from uniforms by inverse CDF so a shifted current sample reuses
the unshifted one's random draws (paired design: a shift scenario differs from the null only by the shift).
  numeric:  num_normal N(50, 10); num_lognormal lognormal(0, 0.75); num_gamma gamma(2, scale 3);
            num_uniform U(0, 100); num_counts Poisson(12) (integers); num_bimodal 0.7 N(0,1) + 0.3 N(4,1)
  categorical (strings): cat3_a [.6 .3 .1]; cat3_b [.85 .1 .05]; cat5_a [.4 .25 .15 .12 .08];
            cat5_b [.5 .2 .15 .1 .05]; cat20_a shares ~ 1/(i+1); cat20_b shares ~ 0.8**i (tail < 1 %).
Scenarios, per seed (reference and current are independent samples of `rows` rows each):
  * null at 500 / 5,000 / 50,000 rows: dataset-level false alarm = any column drifted (target <= 5 %).
    50 seeds measure a 5 % rate only to +-3 points (3/50 = 6 % is well within noise), so the 500-row null
    is also run, ours only, over --null-seeds seeds (default 2,000, ~30 s; +-0.5 points), with each
    column's share of those seeds in which it was flagged (nominal ~0.4 % each: Holm at 0.05 / 12).
  * numeric +0.1 sd at 5,000 rows, one column at a time: the column's values + 0.1 * its population sd
    (num_counts: Poisson(12 + 0.1 * sqrt(12)) from the same uniforms, so it stays integer).
    Power = share of seeds where that column is flagged (target >= 95 %).
  * categorical +0.05 share at 5,000 rows, one column at a time: the share of the column's SECOND most
    common category is raised by 0.05 (absolute, e.g. cat5_a .25 -> .30) and every other category's share
    is multiplied by (1 - p2 - 0.05) / (1 - p2), so relative proportions among them are kept.
    Power as above (target >= 90 %).
  * negligible +0.03 sd at 50,000 rows, numeric columns one at a time: flagged rate (target <= 5 %); the
    raw (uncorrected, floor-less) p < 0.05 rate is printed beside it to show the floor is what stops it.
  * time: table_drift on 12 x 50,000 (median of 5, kinds inferred).
Evidently: DataDriftPreset() with include_tests=True and a DataDefinition naming the same numeric /
categorical columns; a column is drifted when its "Value Drift" test FAILs; "any col" = any column
drifted (comparable to ours), "preset" = its own dataset verdict (share of drifted columns >= 0.5).
Its per-column verdicts are independent (no correction), so it runs on the null frames plus one frame
per size with every column shifted, and single-column scenarios are assembled from those.
CBPE: LogisticRegression on a well-specified logistic task (calibrated), reference = held-out 20,000
rows; current chunks of 5,000 rows with covariate shift along / across the weight vector; estimated vs
realised accuracy and F1 (target |error| <= 0.02), plus alerts on 50 unshifted 1,000-row chunks.

Rerun (the machine is shared, hence nice):
  cd /work/main && nice -n 10 .venv/bin/python bench/monitor.py --seeds 50
  ... --no-evidently        # ours only
  ... --null-seeds 0         # skip the large 500-row null
Evidently's venv (created on first use if missing):
  python3 -m venv ~/.cache/modeldojo-bench/evidently-venv
  ~/.cache/modeldojo-bench/evidently-venv/bin/pip install evidently==0.7.23 "pandas<3" pyarrow
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from modeldojo.monitoring import cbpe  # noqa: E402
from modeldojo.monitoring.drift import column_drift, summarise, table_drift  # noqa: E402

EVIDENTLY_VENV = Path.home() / ".cache/modeldojo-bench/evidently-venv"
NUMERIC = ["num_normal", "num_lognormal", "num_gamma", "num_uniform", "num_counts", "num_bimodal"]
SHARES = {"cat3_a": [.6, .3, .1], "cat3_b": [.85, .1, .05], "cat5_a": [.4, .25, .15, .12, .08],
          "cat5_b": [.5, .2, .15, .1, .05], "cat20_a": list(1 / np.arange(1, 21)),
          "cat20_b": list(0.8 ** np.arange(20))}
CATEGORICAL = list(SHARES)
KINDS = {**{column: "numeric" for column in NUMERIC}, **{column: "categorical" for column in CATEGORICAL}}
COUNT_MEAN = 12.0


def _bimodal(uniforms):
    grid = np.linspace(-5, 9, 4001)
    cdf = 0.7 * stats.norm.cdf(grid) + 0.3 * stats.norm.cdf(grid, 4)
    return np.interp(uniforms, cdf, grid)


QUANTILES = {"num_normal": lambda u: stats.norm.ppf(u, 50, 10),
             "num_lognormal": lambda u: stats.lognorm.ppf(u, 0.75),
             "num_gamma": lambda u: stats.gamma.ppf(u, 2, scale=3),
             "num_uniform": lambda u: 100 * u,
             "num_counts": lambda u: stats.poisson.ppf(u, COUNT_MEAN),
             "num_bimodal": _bimodal}
SD = {"num_normal": 10.0, "num_lognormal": float(stats.lognorm.std(0.75)), "num_gamma": float(np.sqrt(2) * 3),
      "num_uniform": 100 / np.sqrt(12), "num_counts": np.sqrt(COUNT_MEAN),
      "num_bimodal": float(np.sqrt(0.7 * 1 + 0.3 * 17 - (0.3 * 4) ** 2))}


def shifted_shares(shares, amount=0.05):
    shares = np.asarray(shares, float) / np.sum(shares)
    second = np.argsort(-shares, kind="stable")[1]
    out = shares * (1 - shares[second] - amount) / (1 - shares[second])
    out[second] = shares[second] + amount
    return out


def numeric_column(column, uniforms, shift_sd=0.0):
    if column == "num_counts":  # shift the Poisson mean, so counts stay integers
        return stats.poisson.ppf(uniforms, COUNT_MEAN + shift_sd * SD[column])
    return QUANTILES[column](uniforms) + shift_sd * SD[column]


def categorical_column(column, uniforms, shift=0.0):
    shares = np.asarray(SHARES[column], float) / np.sum(SHARES[column])
    if shift:
        shares = shifted_shares(shares, shift)
    index = np.minimum(np.searchsorted(np.cumsum(shares), uniforms), len(shares) - 1)
    return np.array([f"{column}_{i}" for i in range(len(shares))], dtype=object)[index]


def draw(rows, generator):
    return {column: np.clip(generator.random(rows), 1e-12, 1 - 1e-12) for column in KINDS}


def build(uniforms, numeric_shift=0.0, categorical_shift=0.0):
    frame = {column: numeric_column(column, uniforms[column], numeric_shift) for column in NUMERIC}
    frame.update({column: categorical_column(column, uniforms[column], categorical_shift)
                  for column in CATEGORICAL})
    return pd.DataFrame(frame)


EVIDENTLY_SCRIPT = r'''
import json, sys, warnings, pandas as pd
warnings.filterwarnings("ignore")  # scipy divide-by-zero noise from its chi-square on empty categories
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
manifest = json.load(open(sys.argv[1]))
definition = DataDefinition(numerical_columns=manifest["numeric"], categorical_columns=manifest["categorical"])
results = {}
for key, (reference_path, current_path) in manifest["pairs"].items():
    reference, current = pd.read_parquet(reference_path), pd.read_parquet(current_path)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition))
    columns, preset = {}, None
    for test in snapshot.dict()["tests"]:
        if test["name"].startswith("Value Drift for column "):
            columns[test["name"][len("Value Drift for column "):]] = test["status"] == "FAIL"
        elif test["name"].startswith("Share of Drifted Columns"):
            preset = test["status"] == "FAIL"
    results[key] = {"columns": columns, "preset": preset}
json.dump(results, open(sys.argv[2], "w"))
'''


def ensure_evidently():
    python = EVIDENTLY_VENV / "bin/python"
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(EVIDENTLY_VENV / "bin/pip"), "install", "-q", "evidently==0.7.23", "pandas<3",
                        "pyarrow"], check=True)
    return python


def column_results(reference, current):
    return [{"column": column, **column_drift(reference[column], current[column], KINDS[column])}
            for column in KINDS]


def run_ours_and_write(seeds, directory, with_evidently):
    tally = {"null": {500: [], 5000: [], 50000: []}, "numeric": {c: [] for c in NUMERIC},
             "numeric_any": [], "categorical": {c: [] for c in CATEGORICAL}, "categorical_any": [],
             "negligible": {c: [] for c in NUMERIC}, "negligible_raw": {c: [] for c in NUMERIC}}
    pairs = {}
    for seed in range(seeds):
        generator = np.random.default_rng(seed)
        for rows in (500, 5000, 50000):
            reference = build(draw(rows, generator))
            uniforms = draw(rows, generator)
            current = build(uniforms)
            null = column_results(reference, current)
            tally["null"][rows].append(summarise(null).dataset_drift)
            if with_evidently:
                for name, frame in (("reference", reference), ("current", current)):
                    frame.to_parquet(directory / f"{seed}_{rows}_{name}.parquet")
                pairs[f"{seed}_{rows}_null"] = [str(directory / f"{seed}_{rows}_{n}.parquet")
                                                for n in ("reference", "current")]
            if rows in (5000, 50000):
                shifted = build(uniforms, numeric_shift=0.1 if rows == 5000 else 0.03,
                                categorical_shift=0.05 if rows == 5000 else 0.0)
                if with_evidently:
                    shifted.to_parquet(directory / f"{seed}_{rows}_shifted.parquet")
                    pairs[f"{seed}_{rows}_shifted"] = [str(directory / f"{seed}_{rows}_reference.parquet"),
                                                       str(directory / f"{seed}_{rows}_shifted.parquet")]
                columns = NUMERIC + (CATEGORICAL if rows == 5000 else [])
                for column in columns:
                    results = list(null)
                    index = list(KINDS).index(column)
                    results[index] = {"column": column, **column_drift(reference[column], shifted[column],
                                                                       KINDS[column])}
                    report = summarise(results)
                    flagged = column in report.drifted
                    if rows == 50000:
                        tally["negligible"][column].append(flagged)
                        tally["negligible_raw"][column].append(results[index]["p_value"] < 0.05)
                    else:
                        kind = KINDS[column]
                        tally[kind][column].append(flagged)
                        tally[kind + "_any"].append(report.dataset_drift)
    return tally, pairs


def evidently_tally(pairs, seeds, directory):
    python = ensure_evidently()
    manifest = directory / "manifest.json"
    manifest.write_text(json.dumps({"pairs": pairs, "numeric": NUMERIC, "categorical": CATEGORICAL}))
    script = directory / "evidently_drift.py"
    script.write_text(EVIDENTLY_SCRIPT)
    output = directory / "evidently.json"
    started = time.perf_counter()
    subprocess.run([str(python), str(script), str(manifest), str(output)], check=True,
                   env={**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"})
    seconds = time.perf_counter() - started
    results = json.loads(output.read_text())
    tally = {"null_any": {}, "null_preset": {}, "numeric": {c: [] for c in NUMERIC},
             "categorical": {c: [] for c in CATEGORICAL}, "negligible": {c: [] for c in NUMERIC},
             "numeric_any": [], "categorical_any": []}
    for rows in (500, 5000, 50000):
        nulls = [results[f"{seed}_{rows}_null"] for seed in range(seeds)]
        tally["null_any"][rows] = np.mean([any(n["columns"].values()) for n in nulls])
        tally["null_preset"][rows] = np.mean([n["preset"] for n in nulls])
    for seed in range(seeds):
        for rows, columns in ((5000, NUMERIC + CATEGORICAL), (50000, NUMERIC)):
            null, shifted = results[f"{seed}_{rows}_null"], results[f"{seed}_{rows}_shifted"]
            for column in columns:
                flagged = shifted["columns"][column]
                others = any(v for c, v in null["columns"].items() if c != column)
                if rows == 50000:
                    tally["negligible"][column].append(flagged)
                else:
                    tally[KINDS[column]][column].append(flagged)
                    tally[KINDS[column] + "_any"].append(flagged or others)
    return tally, seconds / len(pairs)


def null_500(seeds):
    """500-row null over many seeds (the same first draws per seed as run_ours_and_write): share of seeds
    with any column flagged, and per column."""
    flagged = []
    for seed in range(seeds):
        generator = np.random.default_rng(seed)
        reference, current = build(draw(500, generator)), build(draw(500, generator))
        flagged.append([column["drifted"] for column in summarise(column_results(reference, current)).columns])
    flagged = np.array(flagged, dtype=bool).reshape(-1, len(KINDS))
    return flagged.any(axis=1), dict(zip(KINDS, flagged.mean(axis=0)))


def time_ours():
    generator = np.random.default_rng(123)
    reference, current = build(draw(50000, generator)), build(draw(50000, generator))
    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        table_drift(reference, current)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def cbpe_check():
    from sklearn.linear_model import LogisticRegression
    generator = np.random.default_rng(7)
    weights = np.array([1.5, -1.0, 0.8, 0.0, 0.5])
    across = np.array([0.0, 0.0, 0.0, 1.0, 0.0])  # orthogonal to the weights: accuracy should not move
    along = weights / np.linalg.norm(weights)

    def sample(rows, offset):
        features = generator.normal(size=(rows, 5)) + offset
        labels = (generator.random(rows) < 1 / (1 + np.exp(-(features @ weights - 0.3)))).astype(int)
        return features, labels

    train_x, train_y = sample(20000, 0)
    model = LogisticRegression().fit(train_x, train_y)
    reference_x, reference_y = sample(20000, 0)
    reference_p = model.predict_proba(reference_x)
    rows = []
    for name, offset in [("none", 0), ("none", 0), ("across +1.5", 1.5 * across), ("along +0.5", 0.5 * along),
                         ("along +1.0", 1.0 * along), ("along -0.5", -0.5 * along), ("along -1.0", -1.0 * along)]:
        current_x, current_y = sample(5000, offset)
        result = cbpe.monitor(reference_p, reference_y, model.predict_proba(current_x), [0, 1], 5000,
                              "accuracy", current_labels=current_y)
        f1 = cbpe.estimate(model.predict_proba(current_x), [0, 1], "f1")
        real_f1 = cbpe.realised(model.predict_proba(current_x), current_y, [0, 1], "f1")
        chunk = result["chunks"][0]
        rows.append((name, chunk["estimated"], chunk["realised"], chunk["alert"], f1, real_f1))
    unshifted_x, unshifted_y = sample(50000, 0)
    alerts = cbpe.monitor(reference_p, reference_y, model.predict_proba(unshifted_x), [0, 1], 1000, "accuracy")
    return rows, alerts


def rate(values):
    return f"{100 * np.mean(values):5.1f} %"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--null-seeds", type=int, default=2000, help="seeds for the ours-only 500-row null")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as temporary:
        directory = Path(temporary)
        started = time.perf_counter()
        ours, pairs = run_ours_and_write(args.seeds, directory, not args.no_evidently)
        print(f"ours: {args.seeds} seeds in {time.perf_counter() - started:.1f} s (incl. data generation)")
        theirs, per_report = (None, None)
        if not args.no_evidently:
            try:
                theirs, per_report = evidently_tally(pairs, args.seeds, directory)
            except Exception as error:  # report ours alone, but say why
                print(f"Evidently failed: {error!r}")
    dash = "      -"
    print(f"\n{'scenario':44s} {'ours':>8s} {'Evid. any':>10s} {'Evid. preset':>12s}")
    for rows in (500, 5000, 50000):
        their = (f"{100 * theirs['null_any'][rows]:7.1f} %  {100 * theirs['null_preset'][rows]:9.1f} %"
                 if theirs else "")
        print(f"{'false alarm, unshifted, ' + format(rows, ','):44s} {rate(ours['null'][rows])} {their}")
    if args.null_seeds:
        any_flagged, per_column = null_500(args.null_seeds)
        low, high = stats.binomtest(int(any_flagged.sum()), any_flagged.size).proportion_ci()
        print(f"{'false alarm, unshifted, 500, ' + format(args.null_seeds, ',') + ' seeds':44s} "
              f"{rate(any_flagged)}  (95 % CI {100 * low:.1f} .. {100 * high:.1f} %)")
        print("  per column: " + ", ".join(f"{column} {100 * share:.2f}" for column, share in per_column.items()))
    for kind, label in (("numeric", "+0.1 sd @5,000"), ("categorical", "+0.05 share @5,000")):
        for column in ours[kind]:
            their = f"{rate(theirs[kind][column]):>10s}" if theirs else ""
            print(f"{'power ' + label + ', ' + column:44s} {rate(ours[kind][column])} {their}")
        all_ours = [v for c in ours[kind] for v in ours[kind][c]]
        their = f"{rate([v for c in theirs[kind] for v in theirs[kind][c]]):>10s}" if theirs else ""
        print(f"{'  mean over ' + kind + ' columns':44s} {rate(all_ours)} {their}")
    for column in NUMERIC:
        their = f"{rate(theirs['negligible'][column]):>10s}" if theirs else ""
        print(f"{'negligible +0.03 sd @50,000, ' + column:44s} {rate(ours['negligible'][column])} {their}"
              f"   (ours raw p<0.05: {rate(ours['negligible_raw'][column])})")
    print(f"\ntime table_drift 12 x 50,000 (median of 5): {time_ours():.3f} s"
          + (f"; Evidently mean per report over all sizes: {per_report:.2f} s" if per_report else ""))
    rows, alerts = cbpe_check()
    print(f"\nCBPE (LogisticRegression, 5,000-row chunks; reference estimated "
          f"{alerts['reference_estimated']:.4f} vs realised {alerts['reference_realised']:.4f})")
    print(f"{'shift':14s} {'est acc':>8s} {'real acc':>8s} {'error':>7s} {'alert':>6s} {'est F1':>7s} {'real F1':>7s} {'error':>7s}")
    for name, estimated, real, alert, f1, real_f1 in rows:
        print(f"{name:14s} {estimated:8.4f} {real:8.4f} {estimated - real:+7.4f} {str(alert):>6s} "
              f"{f1:7.4f} {real_f1:7.4f} {f1 - real_f1:+7.4f}")
    print(f"max |accuracy error| {max(abs(r[1] - r[2]) for r in rows):.4f}; "
          f"max |F1 error| {max(abs(r[4] - r[5]) for r in rows):.4f}")
    print(f"unshifted 1,000-row chunks: {alerts['alerts']} alerts in {len(alerts['chunks'])} "
          f"(band {alerts['lower']:.4f} .. {alerts['upper']:.4f})")


if __name__ == "__main__":
    main()
