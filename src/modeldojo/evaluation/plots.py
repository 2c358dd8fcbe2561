"""Matplotlib figures rendered to base64 PNG for embedding in a self-contained HTML report.

Labels come from the user's data (class names, column names), so they may be Japanese: every figure is drawn
with DejaVu Sans first and the IPAexGothic font of `matplotlib-fontja` as the fallback for glyphs DejaVu lacks
(Matplotlib falls back glyph by glyph). English plots look exactly as before; Japanese ones no longer show boxes.
"""
from __future__ import annotations

import base64
import functools
import importlib.util
import io
from pathlib import Path

import numpy as np

JAPANESE_FONT = "IPAexGothic"
JAPANESE_FONT_FILE = "ipaexg.ttf"


@functools.cache
def report_fonts() -> tuple[str, ...]:
    """The font family list report figures use, registering the Japanese font file on first use.

    `import matplotlib_fontja` would do the registering too, but it also sets the default font of the whole
    process (rcParams) — the user's own plots are not ours to restyle. So only its font file is taken: found
    through the package spec, which does not run the package's code."""
    from matplotlib import font_manager

    spec = importlib.util.find_spec("matplotlib_fontja")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        font = Path(folder) / "fonts" / JAPANESE_FONT_FILE
        if font.is_file():
            font_manager.fontManager.addfont(str(font))
            return ("DejaVu Sans", JAPANESE_FONT)
    return ("DejaVu Sans",)  # without the package Japanese shows as boxes, but reports still render


def font_context():
    """rcParams for drawing one report figure; restored afterwards, so the process's own plots are untouched.
    Text objects take the family when created and look the font files up when drawn (savefig), so the whole
    figure, encoding included, goes inside."""
    import matplotlib

    return matplotlib.rc_context({"font.family": list(report_fonts())})


def _with_report_fonts(draw):
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with font_context():
            return draw(*args, **kwargs)
    return drawn


def _figure(width=5.5, height=4.0):
    import matplotlib

    matplotlib.use("Agg", force=False)  # reports are written on servers without a display
    import matplotlib.pyplot as plt

    return plt, plt.subplots(figsize=(width, height), dpi=100)


def _encode(plt, figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@_with_report_fonts
def confusion_matrix(labels: list[str], matrix: list[list[int]]) -> str:
    size = max(4.0, 0.6 * len(labels) + 2)
    plt, (figure, axis) = _figure(size, size * 0.85)
    data = np.asarray(matrix)
    image = axis.imshow(data, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    for (row, column), value in np.ndenumerate(data):
        axis.text(column, row, str(value), ha="center", va="center",
                  color="white" if value > data.max() / 2 else "black", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046)
    return _encode(plt, figure)


@_with_report_fonts
def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray) -> str:
    plt, (figure, axis) = _figure()
    axis.scatter(actual, predicted, s=8, alpha=0.5)
    low, high = float(np.nanmin([actual.min(), predicted.min()])), float(np.nanmax([actual.max(), predicted.max()]))
    axis.plot([low, high], [low, high], color="grey", linewidth=1)
    axis.set_xlabel("actual")
    axis.set_ylabel("predicted")
    axis.set_title("Predicted vs actual")
    return _encode(plt, figure)


@_with_report_fonts
def residuals(actual: np.ndarray, predicted: np.ndarray) -> str:
    plt, (figure, axis) = _figure()
    axis.scatter(predicted, actual - predicted, s=8, alpha=0.5)
    axis.axhline(0, color="grey", linewidth=1)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual − predicted")
    axis.set_title("Residuals")
    return _encode(plt, figure)


@_with_report_fonts
def learning_curves(history: list[dict]) -> str:
    """Train loss per step, and validation loss / metrics at each evaluation."""
    plt, (figure, axis) = _figure(7.0, 4.0)
    steps = [h["step"] for h in history if "train_loss" in h]
    axis.plot(steps, [h["train_loss"] for h in history if "train_loss" in h], label="train loss", alpha=0.6)
    evaluated = [h for h in history if "val_loss" in h]
    if evaluated:
        axis.plot([h["step"] for h in evaluated], [h["val_loss"] for h in evaluated], "o-", label="validation loss")
        shown = [key for key in ("val_accuracy", "val_f1_macro") if key in evaluated[0]]
        if shown:  # a loss-only task (chat) gets no empty second axis
            other = axis.twinx()
            for key in shown:
                other.plot([h["step"] for h in evaluated], [h[key] for h in evaluated], "s--", label=key, alpha=0.8)
            other.set_ylabel("validation metric")
            other.legend(loc="center right")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.legend(loc="upper right")
    axis.set_title("Learning curves")
    return _encode(plt, figure)


@_with_report_fonts
def feature_importance(importance: dict[str, float], top: int = 20) -> str:
    items = list(importance.items())[:top][::-1]
    plt, (figure, axis) = _figure(6.0, max(3.0, 0.25 * len(items) + 1))
    axis.barh([name for name, _ in items], [value for _, value in items])
    axis.set_xlabel("share of total gain")
    axis.set_title(f"Top {len(items)} features")
    return _encode(plt, figure)
