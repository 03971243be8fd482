"""Lake tables by name in SQL: registered in a metastore when one is configured, else as views.

In a notebook, one line makes every built table queryable:

    ws.register_views()    # ws = sparkml_platform.Workspace()

then `SELECT * FROM features_origin_weather_hourly`. Views live in the session only, so
nothing is shared between processes and no embedded metastore is involved.
"""

from __future__ import annotations

from ..runtime.project import open_project
from ..storage.metastore import views


def register_views(spark, conf: str | None = None, env: str | None = None) -> list[str]:
    """A temporary view `ZONE_NAME` over each lake table; returns the view names."""
    return views(spark, open_project(conf, env))


