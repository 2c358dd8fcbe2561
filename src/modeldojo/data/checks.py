"""Data-quality checks that run before any training (and alone as `dojo check`).

Blocking problems are findings of severity "error": training refuses to start. Warnings are
shown, saved with the run (checks.json) and included in the report and model card.
"""
from __future__ import annotations

import hashlib

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .freetext import free_text_columns, text_components  # noqa: F401 - free_text_columns is used by tasks
from .readers import row_location, source_name
from .image_checks import check_images
from .images import image_columns
from .target import DEFAULT_SEPARATOR, infer_kind, label_sets, require_column, target_values

ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|rownames|index)$", re.IGNORECASE)
HIGH_CARDINALITY = 50
IMBALANCE_WARNING = 3.0
LEAKAGE_R2 = 0.98
LEAKAGE_BALANCED_ACCURACY = 0.99


@dataclass
class Finding:
    code: str
    severity: str  # "error" blocks training; "warning" is recorded; "info" is context
    message: str
    column: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckReport:
    source: str
    rows: int
    columns: int
    target: str | None
    kind: str | None
    findings: list[Finding] = field(default_factory=list)
    column_table: list[dict[str, Any]] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)
    label_issues: list[dict[str, Any]] = field(default_factory=list)
    id_columns: list[str] = field(default_factory=list)
    constant_columns: list[str] = field(default_factory=list)
    image_columns: list[str] = field(default_factory=list)
    free_text: list[str] = field(default_factory=list)  # prose columns (any script; data/freetext.py)
    skipped_rows: list[int] = field(default_factory=list)  # unreadable images left out (data.skip_bad_images)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def add(self, code: str, severity: str, message: str, column: str | None = None, **details: Any) -> None:
        self.findings.append(Finding(code, severity, message, column, details))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_checks(frame: pd.DataFrame, target: str | None, *, kind: str = "auto", seed: int = 0,
               label_errors: bool = True, sample_rows: int = 20000, drop_columns: list[str] = (),
               separator: str = DEFAULT_SEPARATOR, skip_bad_images: bool = False) -> CheckReport:
    report = CheckReport(source_name(frame), len(frame), frame.shape[1], target, None)
    if frame.attrs.get("encoding_warning"):  # a guessed text encoding (data/encodings.py)
        report.add("encoding", "warning", frame.attrs["encoding_warning"], encoding=frame.attrs.get("encoding"))
    for entry in frame.attrs.get("normalization_report") or []:  # what data/normalize.py changed, or could not
        report.add(entry["code"], entry["severity"], entry["message"], entry["column"], **entry["details"])
    if len(frame) == 0:
        report.add("empty", "error", f"{report.source}: no data rows")
        return report
    report.image_columns = [str(c) for c in image_columns(frame, {target})]
    for column in report.image_columns:
        report.skipped_rows += check_images(frame, column, report, skip_bad_images)
    frame = _hashable_cells(frame)
    _column_table(frame, target, report)
    _duplicates(frame, report)
    _personal_data(frame, [c for c in frame.columns if c not in set(report.image_columns)], report)
    if target is None:
        return report
    if target not in frame.columns:
        try:
            require_column(frame, target, "target")
        except Exception as error:  # reuse the message with its suggestions
            report.add("missing_target", "error", str(error), target)
        return report
    report.kind = kind = infer_kind(frame, target, kind)
    y = target_values(frame, target, kind, separator)
    if not _target_problems(frame, target, y, kind, report, separator):
        return report
    if kind == "multilabel":
        return report  # the leakage and label-error checks model one label per row
    features = [c for c in frame.columns if c != target and c not in set(report.id_columns)
                | set(report.constant_columns) | set(drop_columns) | set(report.image_columns)]
    usable = y.notna().to_numpy()
    sample = np.flatnonzero(usable)
    if len(sample) > sample_rows:
        sample = np.sort(np.random.default_rng(seed).choice(sample, sample_rows, replace=False))
    encoded, groups = encode_for_checks(frame.iloc[sample][features], report.free_text, seed)
    _leakage(encoded, groups, y.iloc[sample], kind, seed, report)
    if label_errors and kind != "regression":
        _label_errors(frame, encoded, y.iloc[sample], sample, seed, report)
    return report


PERSONAL_DATA_SAMPLE = 5000  # rows scanned for personal data: ~0.4 s for Ames' text columns at 2,930 rows


def _personal_data(frame: pd.DataFrame, columns: list, report: CheckReport) -> None:
    """Columns holding e-mail addresses, phone numbers, My Numbers, card numbers … (privacy.scan_frame): text
    columns, and integer columns long enough to be such a number (12+ digits)."""
    from .. import privacy

    scanned = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])
               or (pd.api.types.is_integer_dtype(frame[c]) and frame[c].abs().max() >= 10 ** 11)]
    if not scanned:
        return
    for found in privacy.scan_frame(frame[scanned], sample_rows=PERSONAL_DATA_SAMPLE):
        kinds = ", ".join(f"{kind} {count}" for kind, count in found["kinds"].items())
        report.add("personal_data", "warning", f"column {found['column']!r}: {found['cells']} of "
                   f"{found['rows_scanned']} scanned cells hold personal data ({kinds}); data.mask_pii=true masks "
                   "it before training and prediction", found["column"], cells=found["cells"], kinds=found["kinds"])


def encode_for_checks(frame: pd.DataFrame, free_text=(), seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """(numbers, {column: its encoded columns}). Numbers stay numbers; free text becomes character n-gram
    components (one code per distinct text would make every review its own category, and a Japanese clause one
    token); everything else integer codes (missing → NaN)."""
    encoded, groups, free_text = {}, {}, {str(column) for column in free_text}
    for position, column in enumerate(frame.columns):
        values, name = frame[column], f"f{position}"  # plain string names: scikit-learn refuses mixed types
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            encoded[name] = values.astype(float).replace([np.inf, -np.inf], np.nan)
        elif str(column) in free_text:
            parts = text_components(values, seed)
            groups[column] = [f"{name}_{index}" for index in range(parts.shape[1])]
            encoded.update(zip(groups[column], parts.T))
            continue
        else:
            codes = pd.Series(pd.factorize(values.astype(str).where(values.notna()))[0], index=values.index)
            encoded[name] = codes.where(codes >= 0).astype(float)
        groups[column] = [name]
    return pd.DataFrame(encoded, index=frame.index), groups


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, np.ndarray):  # image arrays: identical pixels → identical digest (duplicates found)
        return f"array{value.shape}:{hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]}"
    if type(value).__module__.startswith("PIL."):
        return f"image{value.size}:{hashlib.sha1(value.tobytes()).hexdigest()[:16]}"
    return value


def _hashable_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """List, array and image cells as hashable stand-ins, so counting distinct values works."""
    listed = [c for c in frame.columns if frame[c].dtype == object and
              frame[c].map(lambda v: isinstance(v, (list, np.ndarray)) or
                           type(v).__module__.startswith("PIL.")).any()]
    if not listed:
        return frame
    converted = frame.assign(**{str(c): frame[c].map(_hashable) for c in listed})
    converted.attrs = dict(frame.attrs)
    return converted


def _column_table(frame: pd.DataFrame, target: str | None, report: CheckReport) -> None:
    rows = len(frame)
    report.free_text = [str(c) for c in free_text_columns(frame, {target} | set(report.image_columns))]
    free_text = set(report.free_text)
    normalised = {entry["column"]: entry["details"].get("as") for entry in frame.attrs.get("normalization_report") or []
                  if entry["code"] == "normalized"}
    for column in frame.columns:
        values = frame[column]
        missing = int(values.isna().sum())
        unique = int(values.nunique(dropna=True))
        # Constant means one value and no missing cells: "present vs missing" can itself carry signal.
        constant = int(values.nunique(dropna=False)) <= 1
        notes = []
        if column in report.image_columns:
            notes.append("images")
        elif column != target:
            if constant:
                notes.append("constant")
                report.constant_columns.append(str(column))
                report.add("constant", "warning", f"column {column!r} has a single value; it is not used", column)
            elif str(column) in free_text:  # before the ID test: unique Japanese sentences have no spaces either
                notes.append("free text")
            elif _looks_like_id(column, values, unique, rows):
                notes.append("id-like")
                report.id_columns.append(str(column))
                report.add("id_like", "warning", f"column {column!r} looks like a row identifier "
                           f"({unique} distinct values in {rows} rows); it is not used as a feature", column)
            elif not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)) and \
                    unique > HIGH_CARDINALITY:  # dates are features of their own (year, month, day), not categories
                notes.append("high-cardinality")
                report.add("high_cardinality", "warning", f"categorical column {column!r} has {unique} distinct "
                           "values; rare values carry little signal and may overfit", column, unique=unique)
        if str(column) in normalised:
            notes.append(f"normalised ({normalised[str(column)]})")
        if missing:
            share = missing / rows
            severity = "warning" if share > 0.5 and column != target else "info"
            report.add("missing", severity, f"column {column!r} is missing in {missing} rows ({share:.1%})",
                       column, count=missing)
        report.column_table.append({"column": str(column), "dtype": str(values.dtype), "missing": missing,
                                    "missing_pct": round(100 * missing / rows, 2), "unique": unique,
                                    "notes": ", ".join(notes)})


def _looks_like_id(column, values: pd.Series, unique: int, rows: int) -> bool:
    if pd.api.types.is_float_dtype(values) or rows < 20:
        return False
    if ID_NAME.search(str(column)) and unique > 0.9 * rows:
        return True
    if unique != rows:
        return False
    if pd.api.types.is_integer_dtype(values):
        ordered = values.is_monotonic_increasing or values.is_monotonic_decreasing
        return bool(ordered)
    # Unique short strings (codes, hashes) are identifiers; unique long strings are free text.
    text = values.dropna().astype(str)
    return bool(text.str.len().median() <= 40 and not text.str.contains(" ").mean() > 0.5)


def _duplicates(frame: pd.DataFrame, report: CheckReport) -> None:
    try:
        count = int(frame.duplicated().sum())
    except TypeError:  # unhashable cells (lists in JSONL)
        return
    if count:
        report.add("duplicates", "warning", f"{count} duplicate rows ({count / len(frame):.1%}); they can "
                   "inflate test scores when copies land in both train and test", count=count)


def _target_problems(frame: pd.DataFrame, target: str, y: pd.Series, kind: str, report: CheckReport,
                     separator: str = DEFAULT_SEPARATOR) -> bool:
    """Record target findings; False when training cannot go on."""
    missing = int(y.isna().sum())
    if missing == len(y):
        report.add("target_all_missing", "error", f"{report.source}: target column {target!r} has no usable "
                   "values (all empty, NaN or infinite)", target)
        return False
    if missing:
        raw = frame[target]
        infinite = int(pd.to_numeric(raw, errors="coerce").abs().eq(np.inf).sum()) if kind == "regression" else 0
        first = int(np.flatnonzero(y.isna().to_numpy())[0])
        report.add("target_missing", "warning", f"target {target!r} is missing/NaN in {missing - infinite} rows and "
                   f"infinite in {infinite}; those rows are dropped (first at {row_location(frame, first)})",
                   target, count=missing)
    if kind == "regression":
        return True
    if kind == "multilabel":  # rows per label: a row counts once for each of its labels
        counts = pd.Series([label for labels in label_sets(y.dropna(), separator) for label in labels],
                           dtype=object).value_counts()
        if counts.empty:
            report.add("no_labels", "error", f"{report.source}: target {target!r} holds no labels in any row", target)
            return False
    else:
        counts = y.value_counts()
    report.class_counts = {str(k): int(v) for k, v in counts.items()}
    if len(counts) < 2:
        report.add("single_class", "error", f"{report.source}: target {target!r} has a single class "
                   f"({counts.index[0]!r}); classification needs at least two", target)
        return False
    ratio = counts.iloc[0] / counts.iloc[-1]
    report.add("class_balance", "info", f"{len(counts)} classes; largest/smallest = {ratio:.1f}", target,
               imbalance_ratio=float(ratio))
    if ratio >= IMBALANCE_WARNING:
        report.add("imbalance", "warning", f"classes are imbalanced: {counts.index[0]!r} has {counts.iloc[0]} rows, "
                   f"{counts.index[-1]!r} has {counts.iloc[-1]} (ratio {ratio:.1f}); class weights are applied "
                   "automatically (data.class_weights)", target, imbalance_ratio=float(ratio))
    rare = [str(k) for k, v in counts.items() if v < 5]
    if rare:
        report.add("rare_classes", "warning", f"classes with fewer than 5 rows: {', '.join(rare)}; "
                   "their test metrics will be unreliable", target)
    return True


def _leakage(encoded: pd.DataFrame, groups: dict, y: pd.Series, kind: str, seed: int, report: CheckReport) -> None:
    """A single feature that predicts the target almost perfectly is usually a leak."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if len(y) < 30:
        return
    if kind == "regression":
        model, scoring, threshold = DecisionTreeRegressor(random_state=seed), "r2", LEAKAGE_R2
        folds = KFold(3, shuffle=True, random_state=seed)
        target = y.to_numpy(dtype=float)
    else:
        if y.value_counts().min() < 3:
            return
        model, scoring = DecisionTreeClassifier(random_state=seed, class_weight="balanced"), "balanced_accuracy"
        threshold, folds, target = LEAKAGE_BALANCED_ACCURACY, StratifiedKFold(3, shuffle=True, random_state=seed), y.to_numpy()
    for column, parts in groups.items():
        score = float(np.mean(cross_val_score(model, encoded[parts], target, cv=folds, scoring=scoring)))
        if score >= threshold and str(column) in report.free_text:  # the text may be the very input to classify
            report.add("leakage", "warning", f"free-text column {column!r} alone predicts the target almost "
                       f"perfectly (character n-grams, {scoring} {score:.3f} out of fold): if it is written after "
                       "the outcome (a resolution note), drop it (data.drop_columns); if it is the text to "
                       "classify, the task is an easy one", str(column), score=score)
        elif score >= threshold:
            report.add("leakage", "warning", f"column {column!r} alone predicts the target almost perfectly "
                       f"({scoring} {score:.3f} out of fold); if it is only known after the outcome, drop it "
                       "(data.drop_columns)", str(column), score=score)


def _label_errors(frame: pd.DataFrame, encoded: pd.DataFrame, y: pd.Series, positions: np.ndarray, seed: int,
                  report: CheckReport, shown: int = 20) -> None:
    """Suspected label errors: cleanlab on out-of-fold predicted probabilities."""
    from cleanlab.filter import find_label_issues
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = y.value_counts()
    if len(y) < 50 or counts.min() < 5:
        return
    classes = sorted(counts.index)
    codes = y.map({c: i for i, c in enumerate(classes)}).to_numpy()
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    probabilities = cross_val_predict(model, encoded, codes, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                                      method="predict_proba")
    ranked = find_label_issues(labels=codes, pred_probs=probabilities, return_indices_ranked_by="self_confidence")
    if len(ranked) == 0:
        return
    for index in ranked[:shown]:
        position = int(positions[index])
        report.label_issues.append({
            "location": row_location(frame, position), "row": position, "given": classes[codes[index]],
            "suggested": classes[int(np.argmax(probabilities[index]))],
            "given_label_probability": round(float(probabilities[index, codes[index]]), 4)})
    report.add("label_errors", "warning", f"{len(ranked)} rows ({len(ranked) / len(y):.1%}) have a label that "
               "out-of-fold predictions disagree with (cleanlab): suspected label errors or genuinely hard cases; "
               f"the {min(shown, len(ranked))} most suspicious are listed",
               report.target, count=int(len(ranked)))
