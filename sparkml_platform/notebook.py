"""Lake tables by name in SQL: registered in a metastore when one is configured, else as views.

In a notebook, one line makes every built table queryable:

    ws.register_views()    # ws = sparkml_platform.Workspace()

then `SELECT * FROM features_origin_weather_hourly`. Views live in the session only, so
nothing is shared between processes and no embedded metastore is involved.
"""

from __future__ import annotations

from . import lake
from .config import Config, load_config


def lake_tables(config: Config) -> list[str]:
    """Every Delta table under the lake root, as ZONE.NAME."""
    root = config.lake_root
    return [f"{zone}.{name}" for zone in lake.ZONES for name in (root / zone).names()
            if lake.exists(root / zone / name)]


def register_views(spark, conf: str | None = None, env: str | None = None) -> list[str]:
    """A temporary view `ZONE_NAME` over each lake table; returns the view names."""
    return views(spark, load_config(conf, env))


def views(spark, config: Config) -> list[str]:
    """A temporary view `ZONE_NAME` over each lake table of `config`'s lake (Workspace.register_views)."""
    names = []
    for ref in lake_tables(config):
        view = ref.replace(".", "_")
        lake.read(spark, lake.table_path(config.lake_root, ref)).createOrReplaceTempView(view)
        names.append(view)
    return names


def register_table(spark, config: Config, ref: str) -> str | None:
    """Register one lake table in the configured metastore database (no-op when none is)."""
    database = config.platform.metastore.database
    if not database:
        return None
    zone, name = ref.split(".")
    qualified = f"`{database}`.`{zone}_{name.replace('@', '__v')}`"  # NAME@N: the catalog takes no @
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {qualified} USING DELTA "
              f"LOCATION '{lake.table_path(config.lake_root, ref)}'")
    return qualified
