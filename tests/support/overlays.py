"""Configuration overlays (make_project's) shared by the unit and integration tests of a module."""

from conftest import JARS_DIR

# A schedule whose jobs run after one another, one only when another's gate failed.
CHAINED = {"schedules": {"chain": {
    "cron": "15 3 * * 1-5",
    "master": "yarn",
    "archive": ".sparkml/env.tar.gz",
    "env": {"HADOOP_CONF_DIR": "/etc/hadoop/conf"},
    "jobs": {
        "features": {"job": "features_build", "args": ["origin_weather_hourly"]},
        "trainset": {"job": "trainset_build", "args": ["flight_delays"], "after": ["features"]},
        "monitor": {"job": "monitor", "args": ["flight_delays@champion", "--outcomes", "entities.flights"]},
        "retrain": {"job": "retrain", "args": ["flight_delay_gbt"], "after": ["trainset", "monitor"],
                    "when": "success"},
        "fix": {"job": "retrain", "args": ["flight_delay_sklearn"], "after": ["monitor"], "when": "gate_failed"},
    }}}}

# A tiny project: one day of weather, one feature table without a suite, a small local session.
TINY = {
    "platform.yml": {"spark": {"jars_dir": str(JARS_DIR), "shuffle_partitions": 2, "driver_memory": "2g",
                               "master": "local[2]"}},
    "sources.yml": {"sources": {"weather": {"filter": "month = 1 AND day = 5"}}},
    "features.yml": {"feature_tables": {"origin_weather_hourly": {"expectations": None}}},
}
