"""Daily sales of six shops in Japan, two years up to 2025-12-31: a small, realistic table for the forecast task.

Each row is one shop on one day:

    ds          the day (YYYY-MM-DD)
    store       the shop: tokyo, osaka, nagoya, fukuoka, sapporo, sendai
    store_type  mall or street: the same on every row of a shop (a static covariate)
    price       the average selling price that day, in yen; promotions lower it for a few days at a time and are
                planned in advance, so it is a known-future covariate
    y           units sold

Sales are a shop's own level × a slow trend × a weekly season (weekends higher) × a yearly season (summer and the
December rush up, February down) × the response to price × a public-holiday effect (Japanese holidays from the
`holidays` package: malls fill up, shops in office streets empty out) × noise. Seeded: the same arguments give
the same bytes.

    .venv/bin/python examples/forecast_sales.py data/sales.csv --future data/sales_future.csv
    dojo train data/sales.csv --target y --time ds --id store --horizon 28 --name sales
    dojo predict sales --data data/sales.csv --future data/sales_future.csv --out forecast.csv

`--future PATH` also writes the 28 days after the history (2026-01-01 … 2026-01-28) without `y`: the planned
prices of the days to forecast, which `dojo predict --future` needs because the model reads the price.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import holidays
import numpy as np
import pandas as pd

# name: (store type, average units a day at the start, base price in yen)
STORES = {"tokyo": ("mall", 420.0, 980.0), "osaka": ("mall", 360.0, 950.0), "nagoya": ("street", 210.0, 900.0),
          "fukuoka": ("street", 180.0, 880.0), "sapporo": ("mall", 150.0, 920.0), "sendai": ("street", 120.0, 860.0)}
END = pd.Timestamp("2025-12-31")
DAYS = 731  # 2024-01-01 … 2025-12-31 (2024 is a leap year)
FUTURE_DAYS = 28
# Monday … Sunday: people shop at weekends; Friday evenings a little.
WEEKLY = np.array([0.88, 0.86, 0.90, 0.93, 1.05, 1.28, 1.20])
# A holiday multiplies sales by this: mall shops fill up, shops in office streets lose their weekday trade.
HOLIDAY_EFFECT = {"mall": 1.30, "street": 0.75}
ELASTICITY = -1.8  # 10 % off sells about 20 % more: the effect the price covariate lets a model learn


def _prices(rng: np.random.Generator, days: int, base: float) -> np.ndarray:
    """The base price with promotions: a few campaigns a month, each 3–7 days at 10–25 % off."""
    price = np.full(days, base)
    day = int(rng.integers(0, 10))
    while day < days:
        length, discount = int(rng.integers(3, 8)), float(rng.uniform(0.10, 0.25))
        price[day:day + length] = base * (1 - discount)
        day += length + int(rng.integers(6, 16))  # a pause before the next campaign
    return np.round(price, 0).astype(int)  # whole yen, as on a price tag


def _yearly(dates: pd.DatetimeIndex) -> np.ndarray:
    """Summer and the December rush up, February down: two harmonics of the day of the year."""
    angle = 2 * np.pi * (dates.dayofyear.to_numpy() - 1) / 365.25
    return 1 + 0.10 * np.sin(angle - 2.1) + 0.06 * np.cos(2 * angle) + 0.10 * ((dates.month == 12)
                                                                             & (dates.day >= 15))


def generate(seed: int = 0) -> pd.DataFrame:
    """The history (DAYS days ending at END) and the FUTURE_DAYS after it, in one frame; `y` is NaN in the future,
    because its prices are planned but its sales are not known yet."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(end=END + pd.Timedelta(days=FUTURE_DAYS), periods=DAYS + FUTURE_DAYS, freq="D")
    calendar = holidays.country_holidays("JP", years=sorted(set(dates.year)))
    is_holiday = np.array([day in calendar for day in dates.date])
    weekly, yearly = WEEKLY[dates.dayofweek.to_numpy()], _yearly(dates)
    growth = np.arange(len(dates)) / 365.25
    frames = []
    for store, (store_type, level, base_price) in STORES.items():
        price = _prices(rng, len(dates), base_price)
        trend = 1 + rng.uniform(-0.04, 0.10) * growth  # each shop grows (or shrinks) at its own pace
        holiday = np.where(is_holiday, HOLIDAY_EFFECT[store_type], 1.0)
        mean = level * trend * weekly * yearly * holiday * (price / base_price) ** ELASTICITY
        sales = rng.poisson(mean * rng.lognormal(0, 0.06, len(dates)))  # counts, with day-to-day noise
        frames.append(pd.DataFrame({"ds": dates.strftime("%Y-%m-%d"), "store": store, "store_type": store_type,
                                    "price": price, "y": sales.astype(float)}))
    table = pd.concat(frames, ignore_index=True)
    table.loc[pd.to_datetime(table["ds"]) > END, "y"] = np.nan
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="data/sales.csv", help="CSV of the history (default data/sales.csv)")
    parser.add_argument("--future", metavar="PATH", help=f"also write the next {FUTURE_DAYS} days (no y) here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = generate(args.seed)
    history, future = table[table["y"].notna()], table[table["y"].isna()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    history.assign(y=history["y"].astype(int)).to_csv(args.out, index=False)
    print(f"{args.out}: {len(history)} rows, {history['store'].nunique()} stores, {history['ds'].min()} … "
          f"{history['ds'].max()}")
    if args.future:
        Path(args.future).parent.mkdir(parents=True, exist_ok=True)
        future.drop(columns=["y"]).to_csv(args.future, index=False)
        print(f"{args.future}: {len(future)} rows, {future['ds'].min()} … {future['ds'].max()}")


if __name__ == "__main__":
    main()
