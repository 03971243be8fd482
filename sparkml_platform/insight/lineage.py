"""`sparkml lineage REF`: a graph from the raw sources an artifact was made from to the
predictions made from it.

Every step already records what it read: Delta commit metadata (raw loads, entity tables,
feature builds, scoring writes), training-set manifests, registry tags on model versions and
the scoring runs' MLflow tags and params. The graph is read from those records (delta-rs log
reads and MLflow searches, no Spark job), going upstream from REF to the raw sources and
downstream from REF to what was made from it.

Node ids: `raw.NAME`, `entities.NAME`, `features.NAME`, `predictions.NAME` (lake tables),
`trainset:NAME@VERSION`, `model:NAME/VERSION`. Edges point upstream -> downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config
from ..core import refs
from ..core.errors import JobFailed, NotFoundError
from ..storage import lake, places, training_sets
from ..storage.request_log import request_log_table
from ..tracking import registry
from ..tracking.version_record import VersionRecord
from . import catalog

KINDS = ("source", "entity_table", "feature_table", "training_set", "model_version", "predictions")
ZONE_KIND = {"raw": "source", "entities": "entity_table", "features": "feature_table",
             "predictions": "predictions"}
KIND_TITLE = {"source": "source", "entity_table": "entity table", "feature_table": "feature table",
              "training_set": "training set", "model_version": "model version", "predictions": "predictions"}
# Graphviz: one shape and one colour per kind.
KIND_STYLE = {"source": ("cylinder", "#d9d9d9"), "entity_table": ("folder", "#fff2b3"),
              "feature_table": ("box", "#c6dbef"), "training_set": ("tab", "#c7e9c0"),
              "model_version": ("component", "#fdd0a2"), "predictions": ("note", "#f4c2d7")}
LISTINGS = "sparkml sources list, features list, trainset list, models list"


@dataclass(frozen=True)
class Node:
    """One artifact: a lake table, a training-set version or a registered model version."""

    id: str
    kind: str
    label: str
    version: str | None = None
    detail: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "label": self.label, "version": self.version,
                "detail": self.detail}


@dataclass(frozen=True)
class Graph:
    """Nodes, edges (upstream id, downstream id) and the node REF named."""

    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]
    root: str
    # Records that could not be read (a damaged manifest): the graph may lack what they link.
    warnings: tuple[str, ...] = ()

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def parents(self, node_id: str) -> list[str]:
        """What `node_id` was made from (one edge up)."""
        return [a for a, b in self.edges if b == node_id]

    def children(self, node_id: str) -> list[str]:
        """What was made from `node_id` (one edge down)."""
        return [b for a, b in self.edges if a == node_id]

    def to_dict(self) -> dict:
        return {"root": self.root, "nodes": [n.to_dict() for n in self.nodes],
                "edges": [list(e) for e in self.edges], "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, data: dict) -> "Graph":
        return cls(tuple(Node(n["id"], n["kind"], n["label"], n.get("version"), dict(n.get("detail") or {}))
                         for n in data["nodes"]),
                   tuple((a, b) for a, b in data["edges"]), data["root"], tuple(data.get("warnings", ())))

    def to_text(self) -> str:
        """REF, then what it was made from (a tree going up) and what was made from it (a
        tree going down); a node reached twice is expanded once."""
        lines = [_line(self.node(self.root))]
        for title, step, arrow in (("made from:", self.parents, "<-"), ("made into:", self.children, "->")):
            if not step(self.root):
                continue
            lines.append(title)
            shown: set[str] = set()

            def walk(node_id: str, depth: int) -> None:
                for nxt in step(node_id):
                    again = nxt in shown and step(nxt)
                    lines.append(f"{'   ' * depth}{arrow} {_line(self.node(nxt))}"
                                 + ("  (see above)" if again else ""))
                    if not again:
                        shown.add(nxt)
                        walk(nxt, depth + 1)

            walk(self.root, 1)
        return "\n".join(lines)

    def to_dot(self) -> str:
        """Graphviz DOT source (render with `dot -Tsvg`)."""
        out = ["digraph lineage {", "  rankdir=LR;",
               '  node [style=filled, fontname="Helvetica", fontsize=10];']
        for n in self.nodes:
            shape, colour = KIND_STYLE.get(n.kind, ("ellipse", "#ffffff"))
            text = n.label + (f"\nv{n.version}" if n.version is not None and n.kind in ZONE_KIND.values() else "")
            extra = ", penwidth=3" if n.id == self.root else ""
            out.append(f"  {_dot_quote(n.id)} [label={_dot_quote(text)}, shape={shape}, "
                       f'fillcolor="{colour}", tooltip={_dot_quote(KIND_TITLE.get(n.kind, n.kind))}{extra}];')
        out += [f"  {_dot_quote(a)} -> {_dot_quote(b)};" for a, b in self.edges]
        out.append("}")
        return "\n".join(out) + "\n"


def _line(node: Node) -> str:
    what = KIND_TITLE.get(node.kind, node.kind)
    version = f" v{node.version}" if node.version is not None else ""
    note = "" if node.label in node.id else f"  {node.label}"
    missing = "  (not built)" if node.detail.get("exists") is False else ""
    if node.detail.get("missing"):
        missing = "  (UNREADABLE: what it was made from is unknown; see the warning)"
    elif node.detail.get("deleted"):
        missing = "  (deleted)"
    return f"{node.id}  [{what}{version}]{note}{missing}"


def _dot_quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph(config: Config, tracker, ref: str) -> Graph:
    """The lineage graph of REF: a raw source (`raw.NAME` or a source name), an entity table
    (`entities.NAME`), a feature table, a training set [@VERSION], a registered model
    [@ALIAS|/VERSION] or a predictions table (`predictions.NAME`)."""
    walk = _Walk(config, tracker)
    root = walk.resolve(ref.strip())
    walk.add(root)
    walk.up(root)
    walk.down(root)
    # Each damaged manifest once: as a node's reason, else as found while looking downstream.
    unreadable = [n.detail["missing"] for n in walk.nodes.values() if n.detail.get("missing")]
    return Graph(tuple(walk.nodes.values()), tuple(walk.edges), root,
                 tuple(dict.fromkeys(unreadable + walk.damaged)))


class _Walk:
    """The graph being gathered, with the records it read once (manifests, model versions,
    scoring runs, Delta logs)."""

    def __init__(self, config: Config, tracker):
        self.config, self.tracker = config, tracker
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._up_done: set[str] = set()
        self._down_done: set[str] = set()
        self._commits: dict[str, list[dict]] = {}
        self._manifests: list[dict] | None = None
        self.damaged: list[str] = []  # manifests that could not be read while looking downstream
        self._model_versions: list | None = None
        self._runs: list[dict] | None = None
        self._mvs: dict[str, object] = {}

    # --- REF -> node id -------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        config = self.config
        if ref.startswith("trainset:") or ref.startswith("trainsets."):
            return self._trainset_id(ref.split(":", 1)[1] if ":" in ref else ref.split(".", 1)[1])
        if ref.startswith("model:"):
            return self._model_id(ref[len("model:"):])
        zone, _, name = ref.partition(".")
        if zone in ZONE_KIND and name:
            places.table(config, ref)  # a malformed name: ConfigError with the grammar
            if zone == "features" and name.split("@")[0] in config.features.feature_tables:
                ref = "features." + config.feature_ref(name)  # NAME: the declared version
                name = ref.partition(".")[2]
            declared = {"raw": config.sources.sources, "entities": config.sources.entity_tables,
                        "features": config.features.feature_tables}.get(zone, {})
            if name in declared or self._exists(ref) or (
                    zone == "predictions" and any(r["output_table"] == ref for r in self.scoring_runs())):
                return ref
            raise NotFoundError(f"lineage: no {KIND_TITLE[ZONE_KIND[zone]]} {ref} (not in the "
                                f"configuration, not in the lake at {places.lake_root(config)}); see: {LISTINGS}")
        parsed = refs.parse(ref)
        if not parsed.is_model_only:
            if parsed.version is None and parsed.name in config.features.feature_tables:
                return "features." + config.feature_ref(parsed.name)
            if parsed.name in training_sets.names(config):
                return self._trainset_id(ref)
            if parsed.version is None and parsed.name in config.sources.sources:
                return f"raw.{parsed.name}"
        try:
            return self._model_id(ref)
        except NotFoundError as exc:
            raise NotFoundError(
                f"lineage: {ref!r} is not a source, entity table, feature table, training set or "
                f"predictions table, nor a registered model version ({exc}); see: {LISTINGS}") from None

    def _trainset_id(self, ref: str) -> str:
        man = training_sets.manifest(self.config, ref)
        return f"trainset:{man['name']}@{man['version']}"

    def _model_id(self, ref: str) -> str:
        mv = registry.resolve(self.tracker, ref)
        return f"model:{mv.name}/{mv.version}"

    # --- walking --------------------------------------------------------------------------

    def add(self, node_id: str, pin: int | None = None, consumer: str | None = None) -> None:
        if node_id not in self.nodes:
            self.nodes[node_id] = self._make(node_id, pin)
        if consumer is not None and pin is not None:  # which version each consumer read
            self.nodes[node_id].detail.setdefault("read_at", {})[consumer] = pin

    def up(self, node_id: str) -> None:
        if node_id in self._up_done:
            return
        self._up_done.add(node_id)
        for parent, pin in self._parents(node_id):
            self.add(parent, pin, consumer=node_id)
            self.edges[(parent, node_id)] = None
            self.up(parent)

    def down(self, node_id: str) -> None:
        if node_id in self._down_done:
            return
        self._down_done.add(node_id)
        for child in self._children(node_id):
            self.add(child)
            self.edges[(node_id, child)] = None
            self.down(child)

    # --- nodes ----------------------------------------------------------------------------

    def _make(self, node_id: str, pin: int | None) -> Node:
        if node_id.startswith("trainset:"):
            return self._trainset_node(node_id)
        if node_id.startswith("model:"):
            return self._model_node(node_id)
        return self._table_node(node_id, pin)

    def _table_node(self, ref: str, pin: int | None) -> Node:
        zone, name = ref.split(".", 1)
        kind = ZONE_KIND.get(zone, "source")
        commits = self.commits(ref)
        detail: dict = {"exists": bool(commits)}
        if commits:
            detail["latest_version"] = commits[-1]["version"]
            detail["last_written"] = lake.iso_time(commits[-1]["timestamp"])
        version = pin if pin is not None else (commits[-1]["version"] if commits else None)
        meta = self._metadata_at(ref, version)
        if kind == "source":
            source = self.config.sources.sources.get(name)
            if source is not None:
                detail.update(path=source.path, format=source.format, description=source.description,
                              owner=source.owner)
            elif meta.get("source"):
                detail["path"] = meta["source"]
        elif kind == "entity_table":
            spec = self.config.sources.entity_tables.get(name)
            if spec is not None:
                detail.update(transform=spec.transform, description=spec.description, owner=spec.owner)
        elif kind == "feature_table":
            # NAME@N: version N of NAME; its definition is the one its builds recorded.
            base, _, number = name.partition("@")
            table = self.config.features.feature_tables.get(base)
            recorded = meta.get("definition") if isinstance(meta.get("definition"), dict) else {}
            detail["table_version"] = int(number or 1)
            if recorded or table is not None:
                detail.update(description=recorded.get("description", getattr(table, "description", None)),
                              owner=recorded.get("owner", getattr(table, "owner", None)),
                              transformation=recorded.get("transformation", getattr(table, "transformation", None)))
            detail.update({k: meta[k] for k in ("definition_hash", "code_hash", "run_id") if k in meta})
        elif kind == "predictions":
            runs = [r for r in self.scoring_runs() if r["output_table"] == ref]
            detail["runs"] = [{k: r[k] for k in ("run_id", "model", "model_version", "run_date",
                                                  "output_version", "input_table", "input_version")}
                              for r in runs]
            if self._is_request_log(ref):
                detail["online_request_log"] = True
        return Node(ref, kind, ref, None if version is None else str(version), detail)

    def _trainset_node(self, node_id: str) -> Node:
        name, version = node_id[len("trainset:"):].rsplit("@", 1)
        try:
            man = training_sets.manifest(self.config, f"{name}@{version}")
        except NotFoundError as exc:  # a model's training set deleted (retention): said
            return Node(node_id, "training_set", f"{name}@{version}", version, {"deleted": str(exc)})
        except JobFailed as exc:  # damaged: said, and warned of
            return Node(node_id, "training_set", f"{name}@{version}", version, {"missing": str(exc)})
        detail = {k: man.get(k) for k in ("digest", "created_at", "rows", "definition_hash")}
        if "dataframe" in man["label_source"]:
            detail["label_source"] = man["label_source"]  # labels from a DataFrame: not in the lake
        return Node(node_id, "training_set", f"{name}@{version}", version, detail)

    def _model_version(self, node_id: str):
        name, version = node_id[len("model:"):].rsplit("/", 1)
        if node_id not in self._mvs:
            self._mvs[node_id] = self.tracker.client.get_model_version(name, version)
        return self._mvs[node_id]

    def _model_node(self, node_id: str) -> Node:
        name, version = node_id[len("model:"):].rsplit("/", 1)
        mv = self._model_version(node_id)
        record = VersionRecord.from_tags(mv.tags)
        aliases = sorted(mv.aliases or [])
        label = f"{name}/{version}" + (f" ({', '.join(aliases)})" if aliases else "")
        detail = {"run_id": mv.run_id, "aliases": aliases, "created": lake.iso_time(mv.creation_timestamp),
                  **{k: v for k in ("training_set_digest", "environment_id", "decision", "model_spec")
                     if (v := getattr(record, k)) is not None}}
        if record.code is not None:
            detail["code"] = record.code
        return Node(node_id, "model_version", label, version, detail)

    # --- edges ----------------------------------------------------------------------------

    def _parents(self, node_id: str) -> list[tuple[str, int | None]]:
        """(parent id, the version of it that `node_id` read) for what `node_id` was made from."""
        node = self.nodes[node_id]
        if node.kind == "model_version":
            trained_on = VersionRecord.from_tags(self._model_version(node_id).tags).training_set_ref
            return [(f"trainset:{trained_on}", None)] if trained_on else []
        if node.kind == "training_set":
            if "missing" in node.detail or "deleted" in node.detail:
                return []
            man = training_sets.manifest(self.config, node_id[len("trainset:"):])
            out = [] if "dataframe" in man["label_source"] else [
                (man["label_source"]["table"], man["label_source"].get("version"))]
            return out + [(f"features.{lk['table']}", lk.get("version")) for lk in man["lookups"]]
        zone, name = node_id.split(".", 1)
        version = None if node.version is None else int(node.version)
        if node.kind == "predictions":
            return self._predictions_parents(node_id)
        if zone == "features":
            # the newest build at or before the version read, and the source versions it read
            builds = [c for c in self.commits(node_id) if (c["metadata"] or {}).get("kind") == "feature_table"
                      and (version is None or c["version"] <= version)]
            if builds and builds[-1]["metadata"].get("sources"):
                return list(builds[-1]["metadata"]["sources"].items())
            table = self.config.features.feature_tables.get(name.partition("@")[0])
            return [(t, None) for t in table.sources.values()] if table else []
        if zone == "entities":
            meta = self._metadata_at(node_id, version)
            if meta.get("sources"):
                return list(meta["sources"].items())
            spec = self.config.sources.entity_tables.get(name)
            return [(spec.source, None)] if spec else []
        return []  # a raw source is where lineage starts

    def _predictions_parents(self, ref: str) -> list[tuple[str, int | None]]:
        out: dict[str, int | None] = {}
        for commit in self.commits(ref):  # every scoring write, each model version and its input
            meta = commit["metadata"] or {}
            if meta.get("kind") == "predictions" and meta.get("model"):
                out.setdefault(f"model:{meta['model']}/{meta['model_version']}", None)
                out.update(meta.get("input") or {})
        if self._is_request_log(ref) and self.commits(ref):
            for name, version in lake.distinct_values(places.table(self.config, ref),
                                                      ["model_name", "model_version"], ref):
                out.setdefault(f"model:{name}/{version}", None)
        return [(k, v) for k, v in out.items() if not k.startswith("model:") or self._model_exists(k)]

    def _children(self, node_id: str) -> list[str]:
        """What was made from `node_id`."""
        node = self.nodes[node_id]
        if node.kind == "model_version":
            name, version = node_id[len("model:"):].rsplit("/", 1)
            out = [r["output_table"] for r in self.scoring_runs()
                   if r["model"] == name and str(r["model_version"]) == version]
            online = request_log_table(name)
            if self.commits(online) and (name, int(version)) in lake.distinct_values(
                    places.table(self.config, online), ["model_name", "model_version"], online):
                out.append(online)
            return list(dict.fromkeys(out))
        if node.kind == "training_set":
            name, version = node_id[len("trainset:"):].rsplit("@", 1)
            users = registry.trained_on(self.tracker, name).get(int(version), [])
            return [f"model:{u}" for u in sorted(users, key=lambda u: (u.rsplit("/", 1)[0], int(u.rsplit("/", 1)[1])))]
        if node.kind == "predictions":
            return []
        read = catalog.read_by(self.config, node_id, self.manifests(), self.commits)
        out = read["entity_tables"] + read["feature_tables"] + [f"trainset:{t}" for t in read["training_sets"]]
        out += read["predictions"]
        return list(dict.fromkeys(out))

    # --- records, each read once ----------------------------------------------------------

    def commits(self, ref: str) -> list[dict]:
        if ref not in self._commits:
            path = places.table(self.config, ref)
            self._commits[ref] = lake.commits(path, ref) if lake.exists(path) else []
        return self._commits[ref]

    def _exists(self, ref: str) -> bool:
        return bool(self.commits(ref))

    def _metadata_at(self, ref: str, version: int | None) -> dict:
        return next((c["metadata"] or {} for c in self.commits(ref) if c["version"] == version), {}) \
            if version is not None else {}

    def manifests(self) -> list[dict]:
        if self._manifests is None:
            self._manifests = catalog.all_manifests(self.config, self.damaged)
        return self._manifests

    def model_versions(self) -> list:
        if self._model_versions is None:
            self._model_versions = list(self.tracker.client.search_model_versions(max_results=10000))
        return self._model_versions

    def _model_exists(self, node_id: str) -> bool:
        name, version = node_id[len("model:"):].rsplit("/", 1)
        return any(mv.name == name and str(mv.version) == version for mv in self.model_versions())

    def scoring_runs(self) -> list[dict]:
        """The scoring runs (tagged sparkml.kind=score) that wrote their output."""
        if self._runs is None:
            client, found, token = self.tracker.client, [], None
            while True:
                page = client.search_runs([self.tracker.experiment_id], "tags.`sparkml.kind` = 'score'",
                                          max_results=1000, page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    break
            self._runs = [{
                "run_id": r.info.run_id, "model": r.data.tags.get("sparkml.model"),
                "model_version": r.data.tags.get("sparkml.model_version"),
                "output_table": r.data.params["output_table"],
                "output_version": _int(r.data.params.get("output_version")),
                "input_table": r.data.params.get("input_table"),
                "input_version": _int(r.data.params.get("input_version")),
                "run_date": r.data.params.get("run_date"),
            } for r in sorted(found, key=lambda r: r.info.start_time or 0)
                if "output_table" in r.data.params]  # logged once the write committed
        return self._runs

    def _is_request_log(self, ref: str) -> bool:
        """`sparkml serve`'s request log: named after its model, written without commit metadata."""
        return ref.startswith("predictions.online_") and not any(
            (c["metadata"] or {}).get("kind") == "predictions" for c in self.commits(ref))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
