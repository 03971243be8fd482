"""The project's own estimators: any scikit-learn compatible class, named in models.yml as
`estimator: {type: sklearn, class: {{package}}.estimators.NAME}`. A model built on one is
logged with this package (MLflow code_paths), so it loads where the project is not installed.
"""

from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge


class ShrunkRidge(RegressorMixin, BaseEstimator):
    """Ridge regression whose predictions are pulled towards the training mean by `shrink`."""

    def __init__(self, alpha: float = 1.0, shrink: float = 0.0):
        self.alpha = alpha
        self.shrink = shrink

    def fit(self, X, y):
        self.model_ = Ridge(alpha=self.alpha).fit(X, y)
        self.mean_ = float(y.mean())
        return self

    def predict(self, X):
        return (1 - self.shrink) * self.model_.predict(X) + self.shrink * self.mean_
