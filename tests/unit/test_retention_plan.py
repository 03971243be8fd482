"""Which training-set versions retention keeps and deletes (trainsets/retention.py), without I/O."""

import pytest

from sparkml_platform.core.errors import ConfigError
from sparkml_platform.trainsets import retention


def test_the_newest_versions_and_every_version_a_model_or_a_running_training_uses_are_kept():
    decided = retention.plan([1, 2, 3, 4, 5, 6], 2, "training_sets.yml: retention",
                             trained_on={2: ["m/1"], 6: ["m/2"]}, running={3: ["training m"], 5: ["x"]},
                             unfinished=[])
    assert decided.delete == [1, 4]
    assert decided.kept == [2, 3, 5, 6]
    assert decided.kept_for_models == {2: ["m/1"]}  # 6 is among the newest anyway
    assert decided.kept_for_running == {3: ["training m"]}  # 5 is among the newest
    assert (decided.keep, decided.keep_from) == (2, "training_sets.yml: retention")


def test_an_interrupted_delete_is_finished_unless_a_model_was_registered_on_it_since():
    decided = retention.plan([4, 5], 1, "keep", trained_on={2: ["m/3"]}, running={}, unfinished=[2, 3])
    assert decided.finish == [3] and decided.delete == [4] and decided.kept == [5]


def test_keeping_more_versions_than_there_are_deletes_nothing():
    assert retention.plan([1, 2], 5, "keep", {}, {}, []).delete == []
    assert retention.plan([], 1, "keep", {}, {}, []).kept == []


@pytest.mark.parametrize("keep", [0, -1, 1.5, True, "2"])
def test_a_keep_that_is_not_a_whole_number_of_one_or_more_is_refused(keep):
    with pytest.raises(ConfigError, match=f"prune: keep={keep!r} must be a whole number, 1 or more"):
        retention.keep_count("t", keep, 3, "training_sets.yml: retention")


def test_the_number_kept_comes_from_the_argument_else_the_configuration_else_it_is_refused():
    assert retention.keep_count("t", 4, 3, "training_sets.yml: retention") == (4, "keep")
    assert retention.keep_count("t", None, 3, "training_sets.yml: training_sets.t.retention") == \
        (3, "training_sets.yml: training_sets.t.retention")
    with pytest.raises(ConfigError, match="prune: training set t has no retention: set training_sets.yml"):
        retention.keep_count("t", None, None, "training_sets.yml: retention")
