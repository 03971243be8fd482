"""Reading configuration YAML strictly: a duplicated key, bytes that are not UTF-8 or an
alias bomb is an error naming the file, never a silent surprise or minutes of work.

`yaml.safe_load` keeps the last of two equal keys (a second `feature_tables:` block drops
the first's tables) and expands aliases into shared objects that later copies (validation,
hashing) multiply. libyaml's parser (CSafeLoader) is used where installed: large files
load in seconds, not minutes.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..core.errors import ConfigError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Values once aliases are expanded, beyond the values written: DRY anchors stay far below.
MAX_EXPANSION = 100_000
# A configuration describes tables and models: a file this large is data put in the wrong
# place (or a mistake), refused before parsing it.
MAX_BYTES = 4 * 1024 * 1024


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """Safe loading, refusing a key given twice in one mapping."""


def _mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`, merged below
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (first on line "
                            f"{seen[key] + 1}); the second would silently replace the first",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read(path: Path) -> dict:
    """The YAML mapping in `path` ({} when the file is missing or empty)."""
    if not path.exists():
        return {}
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: {size / 2**20:.1f} MB, more than a configuration file may be "
                          f"({MAX_BYTES // 2**20} MB): it describes tables and models; data "
                          "belongs in a source")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as "
                          "UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_bombs(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _refuse_bombs(root, path: Path) -> None:
    """Count the values the document holds once every alias is expanded (memoised per node,
    so counting is linear); refuse one that expands far beyond what is written."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if not children_done:
            if id(node) in visiting:
                raise ConfigError(f"{path}: an alias (*name) refers to a value that contains it: "
                                  "a configuration cannot be recursive")
            visiting.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        visiting.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
    if sizes[id(root)] - len(sizes) > MAX_EXPANSION:
        raise ConfigError(f"{path}: its aliases (*name) expand {len(sizes):,} written values to "
                          f"{sizes[id(root)]:,}: refused (an alias bomb?)")
