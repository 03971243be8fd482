"""Training-set retention: deleting a version, keeping N (and every version a model was
trained on), and a VACUUM of feature tables that keeps what pinned versions need. Real Delta
and a real MLflow registry (model versions tagged as training registers them)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import JARS_DIR, make_project, run_main

from sparkml_platform.core.errors import ConfigError, NotFoundError
from sparkml_platform.storage import lake, places
from sparkml_platform.storage import training_sets as trainset_store

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _table(name: str, features: dict[str, str]) -> dict:
    return {"description": f"retention test {name}", "owner": "tests", "keys": ["k"], "event_time": "ft",
            "sources": {"src": "raw.unused"}, "transformation": "tests.unused",
            "features": {n: {"type": t} for n, t in features.items()}}


def _set(table: str, **extra) -> dict:
    return {"label": {"table": "entities.rt_labels", "keys": ["id"], "event_time": "t", "label": "outcome"},
            "features": [{"table": table}], "split": {"type": "random", "test_fraction": 0.3, "seed": 3},
            **extra}


@pytest.fixture(scope="module")
def proj(tmp_path_factory, spark):
    """A project of its own (conf, lake, MLflow store): labels, two feature tables in the
    lake, training sets defined in its training_sets.yml, so the CLI sees them too."""
    from sparkml_platform.runtime.project import open_project

    conf = make_project(tmp_path_factory.mktemp("retention"), {
        "platform.yml": {"spark": {"jars_dir": str(JARS_DIR), "shuffle_partitions": 2,
                                   "driver_memory": "2g", "master": "local[2]"}},
        "features.yml": {"feature_tables": {"rt_a": _table("rt_a", {"x": "double"}),
                                            "rt_v": _table("rt_v", {"x": "double"})}},
        "training_sets.yml": {"training_sets": {
            "rt_del": _set("rt_a"), "rt_pin": _set("rt_a"),
            "rt_keep": _set("rt_a", retention={"keep": 2}), "rt_vac": _set("rt_v")}},
        "models.yml": {"models": {"rt_spec": {"training_set": "rt_pin", "label": "label",
                                              "estimator": {"type": "gbt_classifier"}}}},
    })
    config = open_project(conf, "test")
    labels = spark.createDataFrame([(i, ["a", "b", "c"][i % 3], T0 + dt.timedelta(hours=10 + i), i % 2)
                                    for i in range(30)], "id int, kk string, t timestamp, outcome int")
    lake.write(labels.withColumnRenamed("kk", "k"), places.table(config, "entities.rt_labels"))
    for name in ("rt_a", "rt_v"):
        lake.write(_features(spark, 1.0), places.table(config, f"features.{name}"))
    return conf


def _features(spark, scale: float):
    return spark.createDataFrame([(k, T0 + dt.timedelta(hours=h), h * scale) for k in "abc" for h in range(0, 50, 4)],
                                 "k string, ft timestamp, x double")


@pytest.fixture(scope="module")
def ws(proj, spark):
    from sparkml_platform import Workspace

    return Workspace(proj, "test", spark=spark)


def _register(ws, model: str, training_set: str, version: int) -> str:
    """A registered model version tagged with the training-set version it learnt from, as
    `registry.register` tags it (no model needed for what retention reads)."""
    client = ws.tracker.client
    if not client.search_registered_models(f"name = '{model}'"):
        client.create_registered_model(model)
    mv = client.create_model_version(model, source=str(ws.config.conf_dir), tags={
        "training_set": training_set, "training_set_version": str(version)})
    return f"{model}/{mv.version}"


def _files(ws, name: str) -> list[str]:
    return places.table(ws.config, f"trainsets.{name}").names()


def test_delete_is_refused_naming_every_model_version_trained_on_it(proj, ws):
    first = ws.build_training_set("rt_del")
    second = ws.build_training_set("rt_del")
    used = [_register(ws, "rt_model", "rt_del", first.version),
            _register(ws, "rt_other", "rt_del", first.version)]
    _register(ws, "rt_model", "rt_del", second.version + 100)  # another version: not a user
    before = _files(ws, "rt_del")

    result = run_main(proj, "trainset", "delete", f"rt_del@{first.version}")
    assert result.returncode == 2, result.stderr
    for ref in used:
        assert ref in result.stderr
    assert f"rt_del@{first.version} is not deleted" in result.stderr
    assert _files(ws, "rt_del") == before  # nothing written, nothing removed
    assert ws.training_set_manifest(f"rt_del@{first.version}")["digest"] == first.manifest["digest"]
    with pytest.raises(ConfigError, match="rt_model/1, rt_other/1"):
        ws.delete_training_set(f"rt_del@{first.version}")


def test_delete_then_list_show_rebuild_and_next_build(proj, ws):
    versions = [ws.build_training_set("rt_pin").version for _ in range(3)]
    gone = versions[-1]  # the newest: its number must not come back
    result = run_main(proj, "trainset", "delete", f"rt_pin@{gone}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == f"rt_pin@{gone}"
    assert trainset_store.list_versions(ws.config, "rt_pin") == versions[:-1]
    assert f"v{gone:04d}" not in _files(ws, "rt_pin") and f"v{gone:04d}.json" not in _files(ws, "rt_pin")
    listed = json.loads(run_main(proj, "trainset", "list", "--json").stdout)
    assert [r["version"] for r in listed if r["name"] == "rt_pin"] == versions[:-1]
    for verb in ("show", "rebuild"):
        shown = run_main(proj, "trainset", verb, f"rt_pin@{gone}")
        assert shown.returncode == 2 and f"rt_pin@{gone} was deleted" in shown.stderr, shown.stderr
    assert ws.training_set("rt_pin").version == versions[-2]  # the newest is the one before
    assert ws.rebuild_training_set(f"rt_pin@{versions[0]}")["matches"]
    assert ws.build_training_set("rt_pin").version == gone + 1  # never reused
    # A version that never existed; a reference without a version.
    missing = run_main(proj, "trainset", "delete", "rt_pin@99")
    assert missing.returncode == 2 and "has no version 99" in missing.stderr
    with pytest.raises(ConfigError, match="names no version"):
        ws.delete_training_set("rt_pin")
    with pytest.raises(NotFoundError):
        ws.delete_training_set("no_such_set@1")


def test_an_interrupted_delete_is_listed_and_finished_by_deleting_again(proj, ws):
    version = ws.build_training_set("rt_pin").version
    base = places.table(ws.config, "trainsets.rt_pin")
    # Stopped after its record and the manifest went, before the rows: what a kill leaves.
    (base / f"v{version:04d}.deleted.json").create(json.dumps({"deleted_at": "earlier"}))
    (base / f"v{version:04d}.json").unlink()
    listed = run_main(proj, "trainset", "list")
    assert f"the delete of rt_pin@{version} did not finish" in listed.stderr
    assert ws.build_training_set("rt_pin").version == version + 1  # its number is not reused
    again = ws.delete_training_set(f"rt_pin@{version}")
    assert again["finished_an_interrupted_delete"] and again["deleted_at"] == "earlier"
    assert f"v{version:04d}" not in _files(ws, "rt_pin")
    assert "did not finish" not in run_main(proj, "trainset", "list").stderr


def test_retention_keeps_the_newest_and_every_version_a_model_uses(proj, ws):
    first = ws.build_training_set("rt_keep")
    assert first.pruned["deleted"] == []
    used = _register(ws, "rt_keeper", "rt_keep", first.version)
    built = [ws.build_training_set("rt_keep") for _ in range(3)]
    # After each build: the newest two, and the first (a model was trained on it).
    assert trainset_store.list_versions(ws.config, "rt_keep") == [first.version, *[b.version for b in built[-2:]]]
    last = built[-1].pruned
    assert last["deleted"] == [f"rt_keep@{built[0].version}"]
    assert last["kept_for_models"] == {f"rt_keep@{first.version}": [used]}
    assert last["keep"] == 2 and last["keep_from"] == "conf/test/training_sets.yml: training_sets.rt_keep.retention"
    # prune with another number, through the CLI: keeps the newest one and the model's.
    result = run_main(proj, "trainset", "prune", "rt_keep", "--keep", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == [f"rt_keep@{built[1].version}"]
    assert trainset_store.list_versions(ws.config, "rt_keep") == [first.version, built[2].version]
    # No retention configured and none given: refused naming the key.
    refused = run_main(proj, "trainset", "prune", "rt_pin")
    assert refused.returncode == 2 and "training_sets.rt_pin.retention.keep" in refused.stderr
    with pytest.raises(NotFoundError):
        ws.prune_training_sets("no_such_set", keep=1)
    with pytest.raises(ConfigError, match="keep=0"):
        ws.prune_training_sets("rt_keep", keep=0)


def test_a_version_a_running_training_reads_is_kept_until_its_reader_ends(proj, ws, caplog):
    """A reader in another process leases a version (as `train` does for its whole run):
    prune keeps it and delete refuses it, naming the reader; once the reader is killed, its
    lease is stale and the version goes."""
    import logging
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO, cli_env

    built = [ws.build_training_set("rt_del") for _ in range(2)]
    leased = built[0].version
    reader = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from sparkml_platform.storage import leases
from sparkml_platform.runtime.project import open_project
with leases.held(open_project({str(proj)!r}, "test"), "training rt_model", {{"training_set:rt_del": [{leased}]}}):
    print("leased", flush=True)
    time.sleep(600)
"""], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert reader.stdout.readline().strip() == "leased"
        pruned = ws.prune_training_sets("rt_del", keep=1)
        assert f"rt_del@{leased}" not in pruned["deleted"]
        assert list(pruned["kept_for_running"]) == [f"rt_del@{leased}"]
        assert f"training rt_model (pid {reader.pid}" in pruned["kept_for_running"][f"rt_del@{leased}"][0]
        refused = run_main(proj, "trainset", "delete", f"rt_del@{leased}")
        assert refused.returncode == 2 and f"it is being read by training rt_model (pid {reader.pid}" in refused.stderr
    finally:
        reader.send_signal(signal.SIGKILL)
        reader.wait(timeout=30)
    time.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="sparkml_platform.storage.leases"):
        pruned = ws.prune_training_sets("rt_del", keep=1)
    assert f"rt_del@{leased}" in pruned["deleted"] and "is stale: removed" in caplog.text
    assert not (places.lake_root(ws.config) / "_leases").names()


def test_training_leases_the_version_it_reads_for_its_whole_run(proj, ws, monkeypatch):
    """What `train` holds while it runs (its inner steps replaced by a look at the leases)."""
    from sparkml_platform.storage import leases
    from sparkml_platform.training import train as training

    version = ws.build_training_set("rt_pin").version
    seen = {}

    def inner(spark, config, tracker, model_name, tune, manifest):
        seen["leased"] = leases.leased(config, "training_set:rt_pin")
        seen["manifest"] = manifest["version"]
        return {}

    monkeypatch.setattr(training, "_train", inner)
    training.train(ws.spark, ws.config, ws.tracker, "rt_spec")
    assert seen["manifest"] == version and list(seen["leased"]) == [version]
    assert "training rt_spec" in seen["leased"][version][0]
    assert leases.leased(ws.config, "training_set:rt_pin") == {}  # released at the end


def test_a_training_set_build_leases_the_table_versions_it_reads(proj, ws, monkeypatch):
    from sparkml_platform.storage import lake, leases
    from sparkml_platform.trainsets import build as training_sets

    written = training_sets.write_version
    seen = {}

    def looking(spark, config, name, joined, facts):
        seen["leases"] = [lease["reads"] for lease in leases.active(config)]
        seen["read"] = {facts["label_source"]["table"]: facts["label_source"]["version"],
                        **{f"features.{lk['table']}": lk["version"] for lk in facts["lookups"]}}
        return written(spark, config, name, joined, facts)

    monkeypatch.setattr(training_sets, "write_version", looking)
    ws.build_training_set("rt_pin")
    assert seen["leases"] == [{f"table:{ref}": [version] for ref, version in seen["read"].items()}]
    assert len(seen["read"]) >= 2 and not leases.active(ws.config)
    assert all(lake.version(None, places.table(ws.config, ref)) == v for ref, v in seen["read"].items())


def test_vacuum_keeps_what_a_pinned_version_needs(proj, ws, spark):
    path = places.table(ws.config, "features.rt_v")
    pinned = ws.build_training_set("rt_vac")  # reads features.rt_v version 0
    lake.write(_features(spark, 2.0), path)  # an overwrite: version 0's files are removed
    old_files = set(lake.files(path, 0)) - set(lake.files(path))
    assert old_files

    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="retain_hours"):
            ws.features.vacuum("rt_v", retain_hours=bad)
    unknown = run_main(proj, "features", "vacuum", "no_such_table")
    assert unknown.returncode == 2 and "no_such_table" in unknown.stderr

    refused = run_main(proj, "features", "vacuum", "rt_v", "--retain-hours", "0")
    assert refused.returncode == 2, refused.stderr
    assert f"rt_vac@{pinned.version}" in refused.stderr and "the minimum is 2 hours" in refused.stderr
    assert all((path / f).exists() for f in old_files)  # nothing deleted

    done = ws.features.vacuum("rt_v", retain_hours=2)
    assert done["retain_hours"] == 2 and done["minimum_hours"] == 2 and done["files_deleted"] == 0
    assert all((path / f).exists() for f in old_files)
    assert ws.rebuild_training_set(f"rt_vac@{pinned.version}")["matches"]
    default = ws.features.vacuum("rt_v")
    assert default["retain_hours"] == 168 and default["retain_hours_given"] is None

    # A scoring under way leases the version it reads: vacuum keeps it as it keeps a pinned one.
    from sparkml_platform.storage import leases

    with leases.held(ws.config, "scoring m/1 into predictions.p", {"table:features.rt_v": [0]}):
        refused = run_main(proj, "features", "vacuum", "rt_v", "--retain-hours", "1")
        assert refused.returncode == 2 and "scoring m/1 into predictions.p (pid" in refused.stderr, refused.stderr
        assert "reads features.rt_v version 0" in refused.stderr

    # Once the pinned version is deleted, nothing holds the files back but the one-hour floor
    # (files a writer is adding are not in the log yet): removed seconds ago, they stay.
    ws.delete_training_set(f"rt_vac@{pinned.version}")
    released = ws.features.vacuum("rt_v", retain_hours=1)
    assert released["pinned_by"] == [] and released["minimum_hours"] == 1
    assert released["files_deleted"] == 0 and all((path / f).exists() for f in old_files)
    # Below the floor, Delta's own VACUUM (what the guard calls) lists and deletes exactly them.
    assert lake.vacuum(spark, path, 0, dry_run=True) == sorted(old_files)
    lake.vacuum(spark, path, 0)
    assert not any((path / f).exists() for f in old_files)
    assert spark.read.format("delta").load(str(path)).count() == _features(spark, 2.0).count()
