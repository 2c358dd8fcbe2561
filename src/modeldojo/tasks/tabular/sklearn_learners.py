"""scikit-learn learners, saved with skops (a safe, inspectable format; never pickle)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .learners import LEARNERS, Learner
from .preprocess import category_codes

SKOPS_FILE = "model.skops"
# Only types from these libraries may be rebuilt from a model file — no builtins (eval, getattr, … would be
# callable references). Our learners' files need numpy.dtype, sklearn.tree._tree.Tree and the
# HistGradientBoosting TreePredictor beyond skops' defaults.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")


class SklearnLearner(Learner):
    """Categorical columns reach scikit-learn as integer codes (missing → NaN)."""

    def _estimator(self, columns: list[str]):
        raise NotImplementedError

    def _codes(self, X: pd.DataFrame) -> pd.DataFrame:
        return category_codes(X, self.categorical)

    def fit(self, X, y, weights, X_val=None, y_val=None, *, rounds=None, patience=0):
        self.model = self._estimator(list(X.columns))
        fit_kwargs = {}
        if weights is not None:
            step = self.model.steps[-1][0] + "__" if hasattr(self.model, "steps") else ""
            fit_kwargs[f"{step}sample_weight"] = weights
        self.model.fit(self._codes(X), y, **fit_kwargs)

    def predict_raw(self, X):
        return self._predict(self._codes(X))

    def predict_codes(self, matrix, preprocessor):
        return self._predict(pd.DataFrame(matrix, columns=preprocessor.output_columns))

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        # Forests average trees across threads in whatever order the threads finish, so parallel
        # predictions differ in the last bits from run to run; one thread makes them reproducible.
        estimator = self.model.steps[-1][1] if hasattr(self.model, "steps") else self.model
        if getattr(estimator, "n_jobs", None) not in (None, 1):
            estimator.set_params(n_jobs=1)
        if self.kind == "regression":
            return np.asarray(self.model.predict(X), dtype=float)
        # A class absent from the training rows gets probability 0, keeping columns aligned.
        probabilities = np.zeros((len(X), self.n_classes))
        probabilities[:, np.asarray(self.model.classes_, dtype=int)] = self.model.predict_proba(X)
        return probabilities

    def save(self, directory: Path) -> None:
        import skops.io

        skops.io.dump(self.model, directory / SKOPS_FILE)

    def load_model(self, directory: Path) -> None:
        import skops.io

        path = directory / SKOPS_FILE
        untrusted = skops.io.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
        if refused:
            raise ValueError(f"{path}: refusing to load types outside scikit-learn/numpy: {refused}")
        self.model = skops.io.load(path, trusted=untrusted)

    def feature_importance(self, columns):
        estimator = self.model.steps[-1][1] if hasattr(self.model, "steps") else self.model
        values = getattr(estimator, "feature_importances_", None)
        return None if values is None else dict(zip(columns, np.asarray(values, dtype=float)))

    def _params(self, **defaults):
        return {**defaults, **self.params}


def _jobs(threads: int):
    return threads or -1


@LEARNERS.register("random_forest")
class RandomForestLearner(SklearnLearner):
    name = "random_forest"

    def _estimator(self, columns):
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestRegressor if self.kind == "regression" else RandomForestClassifier
        return cls(**self._params(n_estimators=300, n_jobs=_jobs(self.threads), random_state=self.seed))


@LEARNERS.register("extra_trees")
class ExtraTreesLearner(SklearnLearner):
    name = "extra_trees"

    def _estimator(self, columns):
        from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

        cls = ExtraTreesRegressor if self.kind == "regression" else ExtraTreesClassifier
        return cls(**self._params(n_estimators=300, n_jobs=_jobs(self.threads), random_state=self.seed))


@LEARNERS.register("decision_tree")
class DecisionTreeLearner(SklearnLearner):
    name = "decision_tree"

    def _estimator(self, columns):
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        cls = DecisionTreeRegressor if self.kind == "regression" else DecisionTreeClassifier
        return cls(**self._params(min_samples_leaf=5, random_state=self.seed))


@LEARNERS.register("hist_gradient_boosting")
class HistGradientBoostingLearner(SklearnLearner):
    name = "hist_gradient_boosting"

    def _estimator(self, columns):
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingRegressor if self.kind == "regression" else HistGradientBoostingClassifier
        return cls(**self._params(random_state=self.seed))


@LEARNERS.register("linear")
class LinearLearner(SklearnLearner):
    """Ridge / logistic regression on imputed, scaled numbers and one-hot categoricals."""

    name = "linear"

    def _estimator(self, columns):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                            ("scale", StandardScaler())])
        categorical = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=-1, keep_empty_features=True)),
                                ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3))])
        # Explicit column lists (not callables) so the fitted pipeline stays serialisable by skops.
        features = ColumnTransformer([("numeric", numeric, [c for c in columns if c not in self.categorical]),
                                      ("categorical", categorical, [c for c in columns if c in self.categorical])])
        model = Ridge(**self._params(alpha=1.0)) if self.kind == "regression" else \
            LogisticRegression(**self._params(max_iter=2000, C=1.0))
        return Pipeline([("features", features), ("model", model)])
