"""The names configuration may use, shared by the schema that checks them and the code that
implements them (estimators, metrics, search-space distributions)."""

# MLlib estimators by spec type: (pyspark.ml module, class name, task).
MLLIB_ESTIMATORS = {
    "logistic_regression": ("classification", "LogisticRegression", "classification"),
    "decision_tree_classifier": ("classification", "DecisionTreeClassifier", "classification"),
    "random_forest_classifier": ("classification", "RandomForestClassifier", "classification"),
    "gbt_classifier": ("classification", "GBTClassifier", "classification"),
    "linear_regression": ("regression", "LinearRegression", "regression"),
    "decision_tree_regressor": ("regression", "DecisionTreeRegressor", "regression"),
    "random_forest_regressor": ("regression", "RandomForestRegressor", "regression"),
    "gbt_regressor": ("regression", "GBTRegressor", "regression"),
}

# The metrics computed per task, and those where lower is better.
METRICS = {
    "classification": ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}

# Hyperopt distributions a search space may name (modeling/search_space.py).
DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "choice")
