"""What a model is, shared by the stages that fit, score and judge models: estimators
(Spark ML and scikit-learn), metrics and the gate, search spaces."""
