"""Tabular classification and regression (gradient-boosted trees, forests, linear models)."""
from . import sklearn_learners  # noqa: F401  (registers the scikit-learn learners)
from .task import TabularTask  # noqa: F401
