"""Which training-set versions retention keeps and deletes, decided without Spark or I/O:
the pure core of `prune` (trainsets/build.py), which gathers the facts and executes it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import ConfigError


@dataclass(frozen=True)
class RetentionPlan:
    """Keep the newest `keep` versions (the number from `keep_from`), every version a
    registered model version was trained on, and every version a running training reads;
    delete the others, and finish the deletes a kill interrupted (unless a model was
    registered on the version since)."""

    keep: int
    keep_from: str
    delete: list[int] = field(default_factory=list)
    finish: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    kept_for_models: dict[int, list[str]] = field(default_factory=dict)
    kept_for_running: dict[int, list] = field(default_factory=dict)


def keep_count(name: str, keep: int | None, configured: int | None, key: str) -> tuple[int, str]:
    """How many newest versions prune keeps (`keep` given, else the configured retention from
    `key`), and where that number comes from."""
    if keep is not None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"prune: keep={keep!r} must be a whole number, 1 or more")
        return keep, "keep"
    if configured is None:
        raise ConfigError(f"prune: training set {name} has no retention: set "
                          f"training_sets.yml: training_sets.{name}.retention.keep (or a default "
                          "retention.keep at the top of training_sets.yml), or give keep")
    return configured, key


def plan(versions: list[int], keep: int, keep_from: str, trained_on: dict[int, list[str]],
         running: dict[int, list], unfinished: list[int]) -> RetentionPlan:
    """The decision for published `versions` (oldest first), given which a model was trained
    on (`trained_on`), which a running training reads (`running`) and which deletes were
    interrupted (`unfinished`)."""
    newest = versions[-keep:]
    delete = [v for v in versions if v not in newest and v not in trained_on and v not in running]
    finish = [v for v in unfinished if v not in trained_on]
    return RetentionPlan(
        keep, keep_from, delete, finish,
        kept=[v for v in versions if v not in delete and v not in finish],
        kept_for_models={v: trained_on[v] for v in versions if v in trained_on and v not in newest},
        kept_for_running={v: running[v] for v in versions
                          if v in running and v not in newest and v not in trained_on})
