"""Time-series forecasting: long (or wide) tables of series → a backtested, probabilistic forecast.

Importing this package registers the task; statsforecast and mlforecast are imported only when a model is fitted.
"""
from . import task  # noqa: F401  (registers "forecast")
