"""From a user's table to regular series: timestamps read, the frequency inferred, wide tables made long, gaps
found (and filled as configured), covariates given their roles. The checks here name file, line and column.

The internal long frame is unique_id (the id columns joined by " | "), ds, y, then covariate columns: the form
statsforecast and mlforecast read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...config import Config
from ...data.readers import row_location, source_name
from ...errors import DataError

SEPARATOR = " | "
HOLIDAY = "dojo_public_holiday"  # the covariate forecast.holidays adds; named apart from users' own columns
TIME_NAMES = ("ds", "date", "time", "timestamp", "datetime", "month", "quarter", "week", "day", "period",
              "日付", "年月", "年月日", "日時", "月")
WIDE_ID, WIDE_TARGET = "series", "value"
_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*Q([1-4])\s*$", re.IGNORECASE)


def parse_times(values: pd.Series) -> pd.Series:
    """Timestamps from dates, date-times (time zones converted to UTC, then dropped), "1998 Q1" quarters and
    "1982 Apr" months; NaT where a cell cannot be read."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        quarters = text.str.extract(_QUARTER)
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        is_quarter = quarters[0].notna()
        if is_quarter.any():
            parsed[is_quarter] = pd.to_datetime(quarters.loc[is_quarter, 0] + "-"
                                                + ((quarters.loc[is_quarter, 1].astype(int) - 1) * 3 + 1)
                                                .astype(str) + "-01")
        rest = ~is_quarter & text.notna()
        if rest.any():
            try:
                converted = pd.to_datetime(text[rest], errors="coerce", utc=True, format="mixed")
            except (ValueError, TypeError):
                converted = pd.to_datetime(text[rest], errors="coerce", utc=True)
            parsed[rest] = converted.dt.tz_convert(None).to_numpy()
        unread = rest & parsed.isna()
        if unread.any():  # Japanese dates: 2024年1月5日, 令和6年1月5日, R6.1.5, and months 2024年1月
            parsed[unread] = text[unread].map(_japanese_date).astype("datetime64[ns]")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    return parsed.astype("datetime64[ns]")


_YEAR_MONTH = re.compile(r"^\s*(\d{4})\s*年\s*(\d{1,2})\s*月\s*$")


def _japanese_date(text: str):
    from ...data.normalize import fold, read_date

    folded = fold(text)
    month = _YEAR_MONTH.match(folded)
    if month and 1 <= int(month[2]) <= 12:
        return pd.Timestamp(int(month[1]), int(month[2]), 1)
    found = read_date(folded)
    return pd.Timestamp(found[0]) if found else pd.NaT


def find_time_column(frame: pd.DataFrame) -> str | None:
    """The column named like a timestamp, else the first non-numeric one that reads as dates (95 % of cells)."""
    for column in frame.columns:
        if str(column).strip().lower() in TIME_NAMES:
            return column
    for column in frame.columns:
        values = frame[column].dropna().head(200)
        if len(values) and not pd.api.types.is_numeric_dtype(values) and parse_times(values).notna().mean() >= 0.95:
            return column
    return None


def widen_to_long(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """A wide table (a time column and one numeric column per series) as long rows: time, series, value."""
    numeric = [c for c in frame.columns if c != time_column and pd.api.types.is_numeric_dtype(frame[c])]
    long = frame.melt(id_vars=[time_column], value_vars=numeric, var_name=WIDE_ID, value_name=WIDE_TARGET)
    lines = frame.attrs.get("lines")
    long.attrs = {k: v for k, v in frame.attrs.items() if k != "lines"}
    if lines is not None:
        long.attrs["lines"] = np.tile(np.asarray(lines), len(numeric))
    long.attrs["setting_defaults"] = {"forecast.id_columns": [WIDE_ID]}
    long.attrs["default_target"] = WIDE_TARGET
    return long


# -- frequency ------------------------------------------------------------------------------------------------
def infer_frequency(long: pd.DataFrame) -> str:
    """The pandas frequency most series agree on (pd.infer_freq over the longest 50), else the commonest step."""
    votes: dict[str, int] = {}
    sizes = long.groupby("unique_id", sort=False).size().sort_values(ascending=False)
    for uid in sizes.index[:50]:
        times = long.loc[long["unique_id"] == uid, "ds"].drop_duplicates().sort_values()
        if len(times) >= 3:
            code = pd.infer_freq(pd.DatetimeIndex(times.to_numpy()))
            if code:
                votes[code] = votes.get(code, 0) + 1
    if votes:
        return max(votes, key=votes.get)
    steps = long.sort_values(["unique_id", "ds"]).groupby("unique_id")["ds"].diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        raise DataError("cannot infer the series' frequency (every series has one timestamp): set "
                        "forecast.frequency (e.g. D, MS)")
    step = steps.mode().iloc[0]
    if pd.Timedelta(days=28) <= step <= pd.Timedelta(days=31):
        return "MS" if (long["ds"].dt.day == 1).all() else "ME"
    return pd.tseries.frequencies.to_offset(step).freqstr


def _base(frequency: str) -> tuple[str, int]:
    offset = pd.tseries.frequencies.to_offset(frequency)
    return offset.name.split("-")[0], int(getattr(offset, "n", 1) or 1)


def season_for(frequency: str) -> int:
    code, n = _base(frequency)
    if code in ("MS", "ME", "M", "BMS", "BME"):
        return max(1, 12 // n)
    if code in ("QS", "QE", "Q", "BQS", "BQE"):
        return max(1, 4 // n)
    if code.startswith("W"):
        return max(1, 52 // n)
    if code == "D":
        return 7 if n == 1 else 1
    if code == "B":
        return 5
    if code in ("h", "H"):
        return max(1, 24 // n)
    if code in ("min", "T"):
        return max(1, 1440 // n)
    return 1


def horizon_for(frequency: str) -> int:
    code, n = _base(frequency)
    table = {"MS": 12, "ME": 12, "M": 12, "QS": 8, "QE": 8, "Q": 8, "D": 14, "B": 10, "h": 48, "H": 48}
    if code.startswith("W"):
        return 13
    if code in ("min", "T"):
        return max(1, 1440 // n)
    if code in ("YS", "YE", "Y", "A", "AS"):
        return 3
    return table.get(code, 10)


# -- roles of the columns -------------------------------------------------------------------------------------
@dataclass
class Layout:
    """Which column is what, and the series' frequency, season and horizon (stated by `dojo check`)."""

    time: str
    ids: list[str]
    target: str
    known: list[str] = field(default_factory=list)
    static: list[str] = field(default_factory=list)
    frequency: str = ""
    season_length: int = 1
    horizon: int = 1
    holidays: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Layout":
        return cls(**raw)

    @property
    def inputs(self) -> list[str]:
        """The columns a prediction row carries (the target is optional: history rows have it)."""
        return [self.time, *self.ids, *[c for c in self.known if c != HOLIDAY], *self.static]


def layout_for(frame: pd.DataFrame, config: Config) -> Layout:
    settings = config.forecast
    time = settings.time_column or find_time_column(frame)
    if time is None or time not in frame.columns:
        raise DataError(f"{source_name(frame)}: no time column" + (f" {time!r}" if time else "")
                        + f"; pass --time COLUMN (columns: {', '.join(map(str, frame.columns))})")
    ids = list(settings.id_columns)
    for column in ids:
        if column not in frame.columns:
            raise DataError(f"{source_name(frame)}: id column {column!r} not found; columns: "
                            f"{', '.join(map(str, frame.columns))}")
    target = config.data.target
    taken = {time, target, *ids, *config.data.drop_columns}
    known = [c for c in settings.known_covariates if c not in taken]
    static = [c for c in settings.static_covariates if c not in taken]
    for column in [*known, *static]:
        if column not in frame.columns:
            raise DataError(f"{source_name(frame)}: covariate column {column!r} not found")
    rest = [c for c in frame.columns if c not in taken and c not in known and c not in static]
    keys = frame[ids].astype(str).agg(SEPARATOR.join, axis=1) if ids else pd.Series("series", index=frame.index)
    for column in rest:  # undeclared columns get a role, stated by the checks: never dropped silently
        per_series = frame[column].groupby(keys).nunique(dropna=False)
        (static if (per_series <= 1).all() else known).append(column)
    if settings.holidays:
        if HOLIDAY in frame.columns:
            raise DataError(f"{source_name(frame)}: column {HOLIDAY!r} is the name of the holiday covariate "
                            "forecast.holidays adds; rename it")
        known.append(HOLIDAY)
    return Layout(time, ids, target, known, static, holidays=settings.holidays)


def to_long(frame: pd.DataFrame, layout: Layout, with_target: bool = True) -> pd.DataFrame:
    """unique_id, ds, y (NaN where absent), covariates; the row order of `frame` is kept (positions match)."""
    keys = frame[layout.ids].astype(str).agg(SEPARATOR.join, axis=1) if layout.ids else \
        pd.Series("series", index=frame.index)
    long = pd.DataFrame({"unique_id": keys.to_numpy(), "ds": parse_times(frame[layout.time]).to_numpy()})
    if with_target and layout.target in frame.columns:
        long["y"] = pd.to_numeric(frame[layout.target], errors="coerce").to_numpy(dtype=float)
    else:
        long["y"] = np.nan
    for column in layout.known + layout.static:
        if column == HOLIDAY:
            continue
        values = frame[column] if column in frame.columns else pd.Series(np.nan, index=frame.index)
        numeric = pd.to_numeric(values, errors="coerce")
        # Booleans and numbers stay numbers; categories become stable integer codes (LightGBM reads both).
        long[column] = numeric.to_numpy(dtype=float) if numeric.notna().sum() >= values.notna().sum() else \
            values.map(_category_code).to_numpy(dtype=float)
    return long


def _category_code(value) -> float:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return float(text == "true")
    import zlib

    return float(zlib.crc32(text.encode("utf-8")) % 100003)  # stable across runs and machines


def add_holidays(long: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """The holiday covariate: 1 on a public holiday (daily or finer), else the count of holidays in the period."""
    if not layout.holidays:
        return long
    import holidays as holiday_calendars

    try:
        years = range(long["ds"].min().year - 1, long["ds"].max().year + 3)
        calendar = holiday_calendars.country_holidays(layout.holidays.upper(), years=years)
    except (NotImplementedError, KeyError):
        raise DataError(f"forecast.holidays: unknown country {layout.holidays!r} (use a code such as JP, US, DE)") \
            from None
    days = pd.DatetimeIndex(sorted(pd.Timestamp(day) for day in calendar))
    offset = pd.tseries.frequencies.to_offset(layout.frequency)
    starts = pd.DatetimeIndex(long["ds"]).normalize()
    if isinstance(offset, pd.offsets.Tick) and offset.nanos <= pd.Timedelta(days=1).value:
        long[HOLIDAY] = starts.isin(days).astype(float)
    else:
        ends = pd.DatetimeIndex(long["ds"]) + offset
        long[HOLIDAY] = days.searchsorted(ends) - days.searchsorted(starts)
        long[HOLIDAY] = long[HOLIDAY].astype(float)
    return long


def regularise(long: pd.DataFrame, layout: Layout, fill: str) -> pd.DataFrame:
    """Sorted, on the frequency's grid, gaps inserted and filled (interpolate / zero); covariates forward- and
    back-filled within each series. The checks have already refused duplicates and off-grid timestamps."""
    long = long.dropna(subset=["ds"]).sort_values(["unique_id", "ds"]).reset_index(drop=True)
    pieces = []
    for uid, group in long.groupby("unique_id", sort=False):
        grid = pd.date_range(group["ds"].iloc[0], group["ds"].iloc[-1], freq=layout.frequency)
        if len(grid) != len(group):
            group = group.set_index("ds").reindex(grid).rename_axis("ds").reset_index()
            group["unique_id"] = uid
        pieces.append(group)
    long = pd.concat(pieces, ignore_index=True) if pieces else long
    if long["y"].isna().any():
        if fill == "zero":
            long["y"] = long["y"].fillna(0.0)
        else:
            long["y"] = long.groupby("unique_id", sort=False)["y"].transform(
                lambda y: y.interpolate(limit_direction="both"))
    covariates = [c for c in [*layout.known, *layout.static] if c in long.columns and c != HOLIDAY]
    if covariates:
        long[covariates] = long.groupby("unique_id", sort=False)[covariates].transform(lambda c: c.ffill().bfill())
    return add_holidays(long[["unique_id", "ds", "y", *covariates]], layout)


def grid_positions(long: pd.DataFrame, frequency: str) -> np.ndarray:
    """Each row's position on the frequency's grid from the earliest timestamp; -1 where a timestamp is off it."""
    times = long["ds"].dropna()
    if times.empty:
        return np.full(len(long), -1)
    grid = pd.date_range(times.min(), times.max(), freq=frequency)
    positions = np.full(len(long), -1)
    present = long["ds"].notna().to_numpy()
    positions[present] = grid.get_indexer(pd.DatetimeIndex(long.loc[present, "ds"]))
    return positions


def where(frame: pd.DataFrame, positions) -> str:
    shown = [row_location(frame, int(p)) for p in list(positions)[:5]]
    more = len(positions) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
