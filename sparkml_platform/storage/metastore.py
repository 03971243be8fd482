"""Lake tables by name in SQL: registered in a metastore database when one is configured
(platform.yml `metastore.database`), else as temporary views of the session."""

from __future__ import annotations

from ..config import Config
from . import lake, places


def lake_tables(config: Config) -> list[str]:
    """Every Delta table under the lake root, as ZONE.NAME."""
    root = places.lake_root(config)
    return [f"{zone}.{name}" for zone in lake.ZONES for name in (root / zone).names()
            if lake.exists(root / zone / name)]


def views(spark, config: Config) -> list[str]:
    """A temporary view `ZONE_NAME` over each lake table of `config`'s lake (Workspace.register_views)."""
    names = []
    for ref in lake_tables(config):
        view = ref.replace(".", "_")
        lake.read(spark, places.table(config, ref)).createOrReplaceTempView(view)
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
              f"LOCATION '{places.table(config, ref)}'")
    return qualified
