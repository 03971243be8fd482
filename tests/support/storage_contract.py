"""What every store must do, as the platform uses it: checked on a local disk and a real S3 API
server (integration/test_storage.py) and on HDFS (cluster/test_remote_lake.py)."""

import threading

import pytest

from sparkml_platform.storage.files import Storage


def s3_storage(endpoint: str) -> Storage:
    return Storage({"spark.hadoop.fs.s3a.endpoint": endpoint,
                    "spark.hadoop.fs.s3a.path.style.access": "true"})


def check_contract(root) -> None:
    """What every store must do, as the platform uses it."""
    folder = root / "zone" / "table"
    assert not folder.exists() and folder.names() == [] and folder.read_or_none() is None
    (folder / "a.json").write_text('{"v": 1}')
    (folder / "sub" / "b.json").write_text("b")
    assert folder.is_dir() and (folder / "a.json").exists() and not (folder / "a.json").is_dir()
    assert folder.names() == ["a.json", "sub"] and (root / "zone").names() == ["table"]
    (folder / "a.json").write_text('{"v": 2}')  # replaced whole
    assert (folder / "a.json").read_text() == '{"v": 2}'
    with pytest.raises(FileNotFoundError):
        (folder / "missing.json").read_text()
    # Published once: the second create loses and leaves the first's content.
    assert (folder / "once.json").create("first") is True
    assert (folder / "once.json").create("second") is False
    assert (folder / "once.json").read_text() == "first"
    # Eight creators at once: exactly one wins.
    wins = []
    threads = [threading.Thread(target=lambda i=i: wins.append((folder / "race.json").create(str(i))))
               for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(wins) == [False] * 7 + [True]
    assert (folder / "race.json").read_text() in {str(i) for i in range(8)}
    (folder / "once.json").unlink()
    assert not (folder / "once.json").exists()
    folder.remove_tree()
    assert not folder.exists() and (root / "zone").names() == []
