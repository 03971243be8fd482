"""Property: whatever YAML a configuration file holds, the loader either loads it or raises
the platform's own ConfigError (exit 2 with a message naming the file), never anything else.

Three kinds of documents: arbitrary text, arbitrary YAML trees, and the reference
configuration with one value somewhere replaced by an arbitrary one (which reaches the
deeper validators: names, refs, durations, dates, search spaces).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkml_platform.config import FILES, Config
from sparkml_platform.core.errors import ConfigError
from sparkml_platform.runtime.project import open_project

BASE = {name: yaml.safe_load((REPO / "conf" / "base" / name).read_text()) or {} for name in FILES}


def _all_keys(node) -> set[str]:
    if isinstance(node, dict):
        return {str(k) for k in node} | {k for v in node.values() for k in _all_keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _all_keys(v)}
    return set()


def _paths(node, prefix=()) -> list[tuple]:
    """Every path to a value in a YAML tree (mapping keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


KEYS = sorted(k for doc in BASE.values() for k in _all_keys(doc))
PATHS = [(name, path) for name, doc in sorted(BASE.items()) for path in _paths(doc)]

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=30) | st.sampled_from(KEYS)
           | st.sampled_from(["2013-01-01", "2013-13-01", "90m", "7d", "-1d", "features.x",
                              "../../evil", "a/b", "os.remove", "flights@champion", ""]))
keys = st.sampled_from(KEYS) | st.text(max_size=12) | st.integers(-3, 3) | st.booleans()
trees = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(keys, children, max_size=4), max_leaves=20)


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("config-properties") / "conf"
    shutil.copytree(REPO / "conf" / "base", root / "base")
    (root / "test").mkdir()
    return root


def _loads_or_refuses(conf: Path, filename: str, text: str | bytes) -> None:
    overlay = conf / "test"
    for old in overlay.iterdir():
        old.unlink()
    target = overlay / filename
    target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        config = open_project(conf, "test")
    except ConfigError as exc:
        assert str(exc).strip(), "a configuration error must say what is wrong"
    else:
        assert isinstance(config, Config)


def _dump(tree) -> str:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(filename=st.sampled_from(sorted(FILES)), text=st.text(max_size=200)
       | st.binary(max_size=80))
def test_arbitrary_text(conf, filename, text):
    _loads_or_refuses(conf, filename, text)


@SETTINGS
@given(filename=st.sampled_from(sorted(FILES)), tree=trees)
def test_arbitrary_yaml_tree(conf, filename, tree):
    _loads_or_refuses(conf, filename, _dump(tree))


@SETTINGS
@given(where=st.sampled_from(PATHS), value=trees)
def test_reference_configuration_with_one_value_replaced(conf, where, value):
    filename, path = where
    doc = yaml.safe_load(_dump(BASE[filename]))
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    # The whole file goes in the overlay, replacing lists as well as mappings of the base.
    _loads_or_refuses(conf, filename, _dump(doc))
