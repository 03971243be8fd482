"""Monitoring's drift bins on a small frame, against pandas: a categorical feature's most frequent
training values (ties by value, missing values apart, the rest `__other__`) for text and boolean
columns in one job, and a numeric value's bin as the number of edges it exceeds."""

from __future__ import annotations

import pytest

from sparkml_platform.insight import monitoring


def test_drift_is_judged_per_feature_and_only_on_periods_with_enough_scored_rows():
    """The pure core that judges: a feature's own ceiling over the model's, excluded features
    recorded and never judged, and drift of a period with fewer scored rows than drift_min_rows
    recorded with its count, not judged."""
    from types import SimpleNamespace

    from sparkml_platform.config import Monitoring

    settings = Monitoring(drift_ceilings={"psi": 0.2}, feature_drift_ceilings={"temp": {"psi": 1.0}},
                          drift_exclude=["month_no"], drift_min_rows=50, min_rows=10)
    drift = {p: {f: {"psi": 0.5, "ks": 0.1} for f in ("temp", "humid", "month_no")} for p in ("2013-10", "2013-11")}
    rows, breaches = monitoring._judge(SimpleNamespace(version="3"), "month", {}, drift, settings, "classification",
                                       {"2013-10": 400, "2013-11": 5})
    psi = {(r["period"], r["name"]): r for r in rows if r["measure"] == "psi"}
    assert [(b["period"], b["name"]) for b in breaches] == [("2013-10", "humid")]
    assert psi[("2013-10", "temp")]["threshold"] == 1.0 and not psi[("2013-10", "temp")]["breached"]
    assert psi[("2013-10", "month_no")]["threshold"] is None  # recorded, never judged
    assert not psi[("2013-11", "humid")]["breached"] and psi[("2013-11", "humid")]["rows"] == 5  # too few rows


def test_each_period_is_compared_with_the_chosen_reference():
    """`previous_period`: each period against the one before it (the first against the
    training set), over the training set's bins; otherwise every period against the training
    set's rows."""
    import pandas as pd

    from sparkml_platform.config import Monitoring

    sizes = {"2013-11": 40, "2013-10": 30, "2013-12": 20}
    assert monitoring.reference_periods(sizes, "training_set") == {p: monitoring.TRAIN for p in sizes}
    assert monitoring.reference_periods(sizes, "previous_period") == {
        "2013-10": monitoring.TRAIN, "2013-11": "2013-10", "2013-12": "2013-11"}
    # A period too small to judge is no reference: the one before it (or the training set) is.
    assert monitoring.reference_periods({**sizes, "2013-11": 3}, "previous_period", least=10) == {
        "2013-10": monitoring.TRAIN, "2013-11": "2013-10", "2013-12": "2013-10"}
    assert monitoring.reference_periods({"2013-10": 3, "2013-11": 40}, "previous_period", least=10) == {
        "2013-10": monitoring.TRAIN, "2013-11": monitoring.TRAIN}
    # A feature constant within each month, another month each time: against the training set
    # every month drifts; against the month before, a month like it does not.
    train = [(monitoring.TRAIN, "x", "0", 50), (monitoring.TRAIN, "x", "1", 50)]
    months = [("2013-10", "x", "0", 30), ("2013-11", "x", "0", 40), ("2013-12", "x", "1", 20)]
    counted = pd.DataFrame(train + months, columns=["__period", "feature", "bin", "count"])
    whole = monitoring._distances(counted, {}, {})
    stepwise = monitoring._distances(counted, {}, {}, monitoring.reference_periods(
        {"2013-10": 30, "2013-11": 40, "2013-12": 20}, "previous_period"))
    assert whole["2013-11"]["x"]["psi"] == whole["2013-10"]["x"]["psi"] > 2
    assert stepwise["2013-10"] == whole["2013-10"] and stepwise["2013-11"]["x"]["psi"] == 0
    assert stepwise["2013-12"]["x"]["psi"] > 2 * whole["2013-12"]["x"]["psi"]  # from all 0 to all 1
    assert Monitoring(drift_reference={"last": "90d"}).drift_reference.last == "90d"
    with pytest.raises(ValueError, match="drift_reference"):
        Monitoring(drift_reference="yesterday")


def test_monitoring_settings_naming_a_feature_the_training_set_lacks_are_refused():
    from sparkml_platform.config import Monitoring
    from sparkml_platform.core.errors import ConfigError

    man = {"name": "flight_delays", "version": 4, "feature_columns": ["temp", "humid"]}
    monitoring.check_features_named(Monitoring(drift_exclude=["temp"]), man, "models.yml: models.m.monitoring")
    settings = Monitoring(drift_exclude=["tmep"], feature_drift_ceilings={"humid": {"psi": 1}, "wnd": {"ks": 0.5}})
    with pytest.raises(ConfigError, match=r"^models.yml: models.m.monitoring: tmep, wnd are not a feature of training "
                                          r"set flight_delays@4 \(features: temp, humid\)$"):
        monitoring.check_features_named(settings, man, "models.yml: models.m.monitoring")
