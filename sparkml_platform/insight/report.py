"""`sparkml report MODEL[@ALIAS|/VERSION]`: one static HTML page per registered model version.

`gather` reads what the version's training already recorded (registry tags, the run's metrics
and parameters, its JSON artifacts and PNG plots), its lineage graph and its monitoring
history; `render` turns that into one self-contained page: pictures as data URIs or inline
SVG, no script, no external URL, so it opens anywhere (a browser, a mail attachment, an
artifact store). Nothing is recomputed: the page shows the numbers the gate saw.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Callable

from ..config import Config
from ..config.vocabulary import METRICS
from ..tracking import registry
from ..tracking.registry import load_json_artifact
from ..tracking.version_record import VersionRecord
from . import lineage
from .lineage import KIND_STYLE, KIND_TITLE, KINDS

PLOTS = (("roc_curve.png", "ROC curve"), ("pr_curve.png", "Precision-recall curve"),
         ("confusion_matrix.png", "Confusion matrix"), ("feature_importance.png", "Feature importance"))
CLASSIFIER_PLOTS = {"roc_curve.png", "pr_curve.png", "confusion_matrix.png"}  # a regression has none


def number(value) -> str:
    """How the page writes a metric: four decimals; a dash when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# --- gathering ---------------------------------------------------------------------------


def gather(config: Config, tracker, ref: str,
           monitoring_history: Callable[[str, int], list[dict]] | None = None) -> dict:
    """Everything the page shows about model version `ref` (MODEL, MODEL@ALIAS, MODEL/VERSION).

    `monitoring_history(name, version)` gives the version's monitoring rows (none when not
    given). Raises NotFoundError for a model, alias or version that does not exist."""
    mv = registry.resolve(tracker, ref)
    client = tracker.client
    run = client.get_run(mv.run_id)
    tags = dict(mv.tags or {})
    record = VersionRecord.from_tags(tags)
    model = client.get_registered_model(mv.name)
    aliases = dict(model.aliases or {})
    documents = _json_artifacts(tracker, mv.run_id, ("gate.json", "training_set_manifest.json",
                                                     "environment.json", "feature_spec.json",
                                                     "tuning.json"))
    spec = documents.get("feature_spec.json") or {}
    task = spec.get("task", "classification")
    champion_mv = registry.champion(tracker, mv.name)
    current = None
    if champion_mv is not None and str(champion_mv.version) != str(mv.version):
        current = {"version": str(champion_mv.version),
                   "metrics": VersionRecord.from_tags(champion_mv.tags).metrics}
    manifest = documents.get("training_set_manifest.json") or {}
    graph = lineage.graph(config, tracker, f"{mv.name}/{mv.version}")
    return {
        "model": mv.name,
        "version": str(mv.version),
        "aliases": sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
        "all_aliases": {a: str(v) for a, v in sorted(aliases.items())},
        "spec": record.model_spec,
        "description": model.description or "",
        "run_id": mv.run_id,
        "created": _time(mv.creation_timestamp),
        "task": task,
        "metric_names": list(METRICS.get(task, ())),
        "run_metrics": dict(run.data.metrics),
        "params": {k: v for k, v in run.data.params.items()},
        "tags": tags,
        "gate": documents.get("gate.json") or {"passed": bool(record.gate_passed), "checks": record.gate_checks},
        "decision": record.decision,
        "compared_with": record.compared_with,
        "current_champion": current,
        "tuning": documents.get("tuning.json") or {},
        "manifest": manifest,
        "training_set": {"name": record.training_set, "version": tags.get("training_set_version"),
                         "digest": record.training_set_digest},
        "feature_tables": [_feature_table(name, version, manifest, graph)
                           for name, version in record.feature_tables.items()],
        "environment_id": record.environment_id,
        "environment": documents.get("environment.json") or {},
        "code": record.code,
        "plots": _plots(tracker, mv.run_id),
        "lineage": graph,
        "monitoring": monitoring_history(mv.name, int(mv.version)) if monitoring_history else [],
        "tracking_uri": tracker.shown_uri,
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def _json_artifacts(tracker, run_id: str, names: tuple[str, ...]) -> dict[str, dict]:
    """The run's JSON records that exist (a model logged from a notebook has no tuning.json)."""
    present = {a.path for a in tracker.client.list_artifacts(run_id)}
    return {name: load_json_artifact(tracker, run_id, name) for name in names if name in present}


def _plots(tracker, run_id: str) -> dict[str, bytes]:
    """The run's PNG plots by file name (those it has: a regression has no ROC curve)."""
    import mlflow

    if not any(a.path == "plots" for a in tracker.client.list_artifacts(run_id)):
        return {}
    with tempfile.TemporaryDirectory() as tmp, tracker.bound():
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots",
                                                          dst_path=tmp, tracking_uri=tracker.uri))
        return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _feature_table(name: str, version, manifest: dict, graph) -> dict:
    """A feature table the model learnt from: the version it read, its lookup (keys, event
    time, columns) from the manifest, and its newest version in the lake (from the lineage
    graph, which read the table's Delta log)."""
    lookup = next((lk for lk in manifest.get("lookups", []) if lk.get("table") == name), {})
    node = next((n for n in graph.nodes if n.id == f"features.{name}"), None)
    return {"table": name, "version": version,
            "newest_version": (node.detail or {}).get("latest_version") if node else None,
            "keys": list((lookup.get("key_map") or {}).values()), "event_time": lookup.get("event_time"),
            "features": list((lookup.get("columns") or {}).values()),
            "lookback_seconds": lookup.get("lookback_seconds")}


def _time(millis) -> str | None:
    if millis is None:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- rendering ---------------------------------------------------------------------------


def e(value) -> str:
    return html.escape("–" if value is None else str(value))


def render(data: dict) -> str:
    """The whole page as one string."""
    title = f"{data['model']} version {data['version']}"
    sections = [_header(data), _metrics(data), _pictures(data), _training_set(data),
                _features(data), _lineage(data), _monitoring(data),
                f"<div class=\"two\">{_environment(data)}{_details(data)}</div>"]
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)} – model report</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(sections)
            + f"\n<footer>Generated {e(data['generated'])} by sparkml report from {e(data['tracking_uri'])}"
            f" (run {e(data['run_id'])}).</footer>\n</body></html>\n")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:24px 32px;color:#1f2328;background:#fff;font-size:14px;line-height:1.45}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 6px}
.muted{color:#59636e}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
table{border-collapse:collapse;margin:6px 0 12px}
th,td{border:1px solid #d0d7de;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:600;font-size:13px;
margin-right:6px}
.pass{background:#dafbe1;color:#116329}
.fail{background:#ffebe9;color:#a40e26}
.alias{background:#ddf4ff;color:#0550ae}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:150px}
.card .k{font-size:12px;color:#59636e}
.card .v{font-size:20px;font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:6px;background:#fff}
figcaption{font-size:12px;color:#59636e;text-align:center}
figure img{display:block;max-width:100%;height:auto}
figure.small img{width:350px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:28px}
.two h2{margin-top:32px}
tr.breach td{background:#ffebe9}
.periods{display:flex;flex-wrap:wrap;column-gap:28px}
.ok{color:#116329}
.bad{color:#a40e26;font-weight:600}
.lineage{border:1px solid #d0d7de;border-radius:6px;padding:8px}
.lineage svg{display:block;max-width:100%;height:auto}
details{margin:6px 0}
summary{cursor:pointer;color:#0550ae}
.packages{columns:4;font-size:12px}
footer{margin-top:36px;color:#59636e;font-size:12px;border-top:1px solid #d0d7de;padding-top:8px}
"""


def _header(d: dict) -> str:
    gate = d["gate"]
    passed = bool(gate.get("passed"))
    badges = (f'<span class="badge {"pass" if passed else "fail"}" id="gate-verdict">gate '
              f'{"passed" if passed else "failed"}</span>'
              + "".join(f'<span class="badge alias">@{e(a)}</span>' for a in d["aliases"]))
    first = d["metric_names"][0] if d["metric_names"] else None
    ts = d["training_set"]
    headline = ("test " + first, number(d["run_metrics"].get(first))) if first else ("metric", "–")
    cards = [headline,
             ("training set", f"{ts['name']}@{ts['version']}"),
             ("environment", d["environment_id"]),
             ("estimator", (d["params"].get("estimator") or "–").rsplit(".", 1)[-1])]
    return (f"<header><h1>{e(d['model'])} <span class=\"muted\">version {e(d['version'])}</span></h1>"
            f"<div>{badges}</div>"
            f"<p class=\"muted\">Model spec {e(d['spec'])} · registered {e(d['created'])} · run "
            f"<span class=\"mono\">{e(d['run_id'])}</span>"
            + (f" · {e(d['description'])}" if d["description"] else "") + "</p>"
            f"<p><b>Decision:</b> <span id=\"decision\">{e(d['decision'])}</span> "
            f"<span class=\"muted\">(compared with {e(d['compared_with'])})</span></p>"
            "<div class=\"cards\">"
            + "".join(f"<div class=\"card\"><div class=\"k\">{e(k)}</div><div class=\"v\">{e(v)}</div></div>"
                      for k, v in cards)
            + "</div></header>")


def _metrics(d: dict) -> str:
    gate = d["gate"]
    checks = gate.get("checks") or []
    compared = (gate.get("champion") or {})
    champion_metrics = compared.get("metrics") or {}
    current = d["current_champion"]
    show_current = current is not None and str(current["version"]) != str(compared.get("version"))
    m = d["run_metrics"]
    head = ["metric", "test", "validation"]
    if champion_metrics:
        head.append(f"champion v{compared.get('version')} (same test rows)")
    if show_current:
        head.append(f"current champion v{current['version']} (its own test rows)")
    head += ["threshold", "gate"]
    rows = []
    for name in d["metric_names"]:
        mine = [c for c in checks if c.get("metric") == name]
        cells = [f"<td>{e(name)}</td>", _num(m.get(f"test_{name}", m.get(name)), f"metric-test-{name}"),
                 _num(m.get(f"validation_{name}"), f"metric-validation-{name}")]
        if champion_metrics:
            cells.append(_num(champion_metrics.get(name)))
        if show_current:
            cells.append(_num(current["metrics"].get(name)))
        cells.append(f"<td>{'<br>'.join(e(c.get('rule')) for c in mine) or '–'}</td>")
        verdicts = "<br>".join("passed" if c.get("passed") else "failed" for c in mine)
        klass = "" if not mine else f' class="{"ok" if all(c.get("passed") for c in mine) else "bad"}"'
        cells.append(f"<td{klass}>{verdicts or '–'}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    other = [c for c in checks if c.get("metric") not in d["metric_names"]]
    for c in other:  # a threshold on a metric given by hand (log_model's metrics=)
        rows.append(f"<tr><td>{e(c.get('metric'))}</td>{_num(c.get('value'))}<td>–</td>"
                    + ("<td>–</td>" if champion_metrics else "") + ("<td>–</td>" if show_current else "")
                    + f"<td>{e(c.get('rule'))}</td><td class=\"{'ok' if c.get('passed') else 'bad'}\">"
                    f"{'passed' if c.get('passed') else 'failed'}</td></tr>")
    failed = gate.get("failed") or []
    note = ("<p class=\"muted\">No champion was compared: "
            + e(compared.get("skipped") or d["compared_with"]) + ".</p>") if not champion_metrics else ""
    return ("<section id=\"metrics\"><h2>Metrics, thresholds and the champion</h2>"
            f"<table><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr>{''.join(rows)}</table>{note}"
            + (f"<p class=\"bad\">Failed: {e('; '.join(failed))}</p>" if failed else "")
            + f"<p class=\"muted\">Rows: train {e(d['tags'].get('train_rows'))}, validation "
              f"{e(d['tags'].get('validation_rows'))}, test {e(d['tags'].get('test_rows'))}.</p></section>")


def _num(value, ident: str | None = None) -> str:
    named = f' id="{e(ident)}"' if ident else ""
    return f'<td class="num"{named}>{e(number(value))}</td>'


def _pictures(d: dict) -> str:
    figures = []
    for name, caption in PLOTS:
        if name in d["plots"]:
            size = "" if name == "feature_importance.png" else " class=\"small\""
            figures.append(f"<figure{size}><img alt=\"{e(caption)}\" src=\"{_data_uri(d['plots'][name])}\">"
                           f"<figcaption>{e(caption)}</figcaption></figure>")
    body = ("<div class=\"figures\">" + "".join(figures) + "</div>") if figures else \
        "<p class=\"muted\">No plots were recorded for this version.</p>"
    expected = [(n, c) for n, c in PLOTS if d.get("task", "classification") == "classification"
                or n not in CLASSIFIER_PLOTS]
    missing = [c for n, c in expected if n not in d["plots"]]
    if figures and missing:
        body += f"<p class=\"muted\">Not recorded for this version: {e(', '.join(missing))}.</p>"
    return f"<section id=\"plots\"><h2>Evaluation on the test split</h2>{body}</section>"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _training_set(d: dict) -> str:
    man, ts = d["manifest"], d["training_set"]
    rows = man.get("rows") or {}
    label = man.get("label_source") or {}
    facts = [("name", ts["name"]), ("version", ts["version"]), ("digest", ts["digest"]),
             ("created", man.get("created_at")), ("definition hash", man.get("definition_hash")),
             ("label source", _label_source(label)),
             ("rows", ", ".join(f"{k} {v}" for k, v in rows.items()) if rows else None),
             ("stored at", man.get("path")),
             ("feature columns", ", ".join(man.get("feature_columns") or []) or None)]
    table = _facts(facts, "ts")
    full = (f"<details><summary>The whole manifest</summary><pre class=\"mono\">"
            f"{e(json.dumps(man, indent=2, default=str))}</pre></details>") if man else \
        "<p class=\"muted\">No manifest was recorded with this version.</p>"
    return f"<section id=\"training-set\"><h2>Training set</h2><table>{table}</table>{full}</section>"


def _facts(facts: list[tuple[str, object]], prefix: str) -> str:
    """A two-column table of named facts; each value cell has an id (`PREFIX-NAME`)."""
    return "".join(f"<tr><th>{e(k)}</th><td class=\"mono\" id=\"{prefix}-{e(k.replace(' ', '-'))}\">"
                   f"{e(v)}</td></tr>" for k, v in facts)


def _label_source(label: dict) -> str | None:
    """The table (at its version) the labels came from, or the DataFrame's digest."""
    if label.get("table"):
        return f"{label['table']}@{label.get('version')}"
    if label.get("dataframe"):
        return f"a DataFrame (digest {label.get('digest')})"
    return None


def _features(d: dict) -> str:
    rows = []
    for t in d["feature_tables"]:
        used, newest = t["version"], t["newest_version"]
        newer = None not in (used, newest) and str(newest) != str(used)
        rows.append(f"<tr><td>features.{e(t['table'])}</td><td class=\"num\">{e(t['version'])}</td>"
                    f"<td class=\"num\">{e(t['newest_version'])}{' (newer)' if newer else ''}</td>"
                    f"<td>{e(', '.join(t['keys']))}</td><td>{e(t['event_time'])}</td>"
                    f"<td>{e(_lookback(t['lookback_seconds']))}</td>"
                    f"<td>{e(', '.join(t['features']))}</td></tr>")
    if not rows:
        return ("<section id=\"features\"><h2>Feature tables</h2><p class=\"muted\">This version "
                "looked up no feature table.</p></section>")
    head = "".join(f"<th>{h}</th>" for h in ("table", "version used", "newest version", "keys",
                                             "event time", "lookback", "features"))
    return (f"<section id=\"features\"><h2>Feature tables</h2><table><tr>{head}</tr>{''.join(rows)}"
            "</table></section>")


def _lookback(seconds) -> str:
    if seconds is None:
        return "unbounded"
    return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds} s"


def _environment(d: dict) -> str:
    env = d["environment"]
    facts = [("id", d["environment_id"])] + [(k, env.get(k)) for k in
                                             ("python", "implementation", "platform", "spark", "java",
                                              "scala", "delta") if env.get(k)]
    packages = env.get("packages") or {}
    facts.append(("packages", len(packages) if packages else None))
    code = d["code"] or {}
    framework = code.get("framework") or {}
    facts += [("project", code.get("project")), ("project commit", code.get("git_commit")),
              ("project content hash", code.get("content_hash")),
              ("sparkml-platform", framework.get("version"))]
    table = _facts(facts, "env")
    listing = (f"<details><summary>{len(packages)} packages</summary><div class=\"packages mono\">"
               + "".join(f"<div>{e(n)}=={e(v)}</div>" for n, v in sorted(packages.items()))
               + "</div></details>") if packages else ""
    return (f"<section id=\"environment\"><h2>Environment and code</h2><table>{table}</table>{listing}"
            "</section>")


def _details(d: dict) -> str:
    params = {k: v for k, v in sorted(d["params"].items())}
    rows = "".join(f"<tr><th>{e(k)}</th><td class=\"mono\">{e(v)}</td></tr>" for k, v in params.items())
    tuning = d["tuning"]
    tuned = (f"<p>Tuned: the best trial's loss was {e(number(tuning.get('loss')))} "
             f"({e(', '.join(sorted(tuning['params'])))} searched).</p>") if tuning.get("params") else ""
    aliases = ", ".join(f"{a} → v{v}" for a, v in d["all_aliases"].items()) or "none"
    return (f"<section id=\"parameters\"><h2>Parameters</h2><table>{rows}</table>{tuned}"
            f"<p class=\"muted\">Aliases of {e(d['model'])}: {e(aliases)}.</p></section>")


# --- lineage picture ---------------------------------------------------------------------


def _lineage(d: dict) -> str:
    graph = d["lineage"]
    if graph is None or not graph.nodes:
        return "<section id=\"lineage\"><h2>Lineage</h2><p class=\"muted\">No lineage recorded.</p></section>"
    return ("<section id=\"lineage\"><h2>Lineage: from raw sources to predictions</h2>"
            f"<div class=\"lineage\">{lineage_svg(graph)}</div></section>")


NODE_H, ROW_GAP, COL_GAP, CHAR_W, SMALL_W, PAD = 46, 14, 48, 7.1, 6.2, 12


def lineage_svg(graph) -> str:
    """A `lineage.Graph` as an inline SVG: one column per kind (raw sources left, predictions
    right, in `lineage.KINDS` order), edges upstream -> downstream, the graph's root outlined.
    Every node's label is text in the SVG (searchable, selectable); its description and id
    are its tooltip."""
    columns = _columns(graph)
    # Wide enough for every label, and for the second lines up to a point (then cut, "…").
    widths = [max(140, math.ceil(PAD * 2 + max(max(CHAR_W * len(n.label),
                                                   min(300.0, SMALL_W * len(_second_line(n))))
                                               for n in col))) for col in columns]
    height = max(len(col) for col in columns) * (NODE_H + ROW_GAP) - ROW_GAP
    top = 26  # the kind titles above the columns
    xs, x = [], 10
    for w in widths:
        xs.append(x)
        x += w + COL_GAP
    total_w, total_h = x - COL_GAP + 10, height + top + 10
    box = {}
    for col, cx, w in zip(columns, xs, widths):
        offset = top + (height - (len(col) * (NODE_H + ROW_GAP) - ROW_GAP)) / 2
        for i, node in enumerate(col):
            box[node.id] = (cx, offset + i * (NODE_H + ROW_GAP), w)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
             f'viewBox="0 0 {total_w} {total_h}" role="img" aria-label="lineage of {e(graph.root)}" '
             'font-family="system-ui,Helvetica,Arial,sans-serif">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/>'
             '</marker></defs>']
    for col, cx, w in zip(columns, xs, widths):
        parts.append(f'<text x="{cx + w / 2:.0f}" y="14" text-anchor="middle" font-size="12" '
                     f'fill="#59636e">{e(KIND_TITLE.get(col[0].kind, col[0].kind))}</text>')
    for up, down in graph.edges:
        if up not in box or down not in box:
            continue
        (x1, y1, w1), (x2, y2, _) = box[up], box[down]
        sx, sy, ex, ey = x1 + w1, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        bend = max(30.0, (ex - sx) / 2)
        parts.append(f'<path d="M{sx:.1f},{sy:.1f} C{sx + bend:.1f},{sy:.1f} {ex - bend:.1f},{ey:.1f} '
                     f'{ex - 2:.1f},{ey:.1f}" fill="none" stroke="#8c959f" stroke-width="1.3" '
                     'marker-end="url(#arrow)"/>')
    for node in graph.nodes:
        bx, by, w = box[node.id]
        root = node.id == graph.root
        parts.append(
            f'<g class="node" data-kind="{e(node.kind)}" data-id="{e(node.id)}">'
            f'<title>{e(_tooltip(node))}</title>'
            f'<rect x="{bx}" y="{by:.1f}" width="{w}" height="{NODE_H}" rx="6" '
            f'fill="{KIND_STYLE.get(node.kind, ("", "#f6f8fa"))[1]}" '
            f'stroke="{"#cf222e" if root else "#8c959f"}" stroke-width="{2.5 if root else 1}"/>'
            f'<text x="{bx + PAD}" y="{by + 19:.1f}" font-size="12.5" font-weight="600" '
            f'fill="#1f2328">{e(node.label)}</text>'
            f'<text x="{bx + PAD}" y="{by + 36:.1f}" font-size="11" fill="#59636e">'
            f'{e(_fit(_second_line(node), w))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _columns(graph) -> list[list]:
    """Nodes grouped by kind in KINDS order (unknown kinds after), each column ordered by the
    mean position of its nodes' upstream neighbours, so edges cross little."""
    order = list(KINDS) + [n.kind for n in graph.nodes if n.kind not in KINDS]
    groups: dict[str, list] = {}
    for node in graph.nodes:
        groups.setdefault(node.kind, []).append(node)
    columns = [sorted(groups[k], key=lambda n: n.id) for k in dict.fromkeys(order) if k in groups]
    upstream: dict[str, list[str]] = {}
    for up, down in graph.edges:
        upstream.setdefault(down, []).append(up)
    position: dict[str, float] = {n.id: i for n, i in ((n, i) for i, n in enumerate(columns[0]))}
    for col in columns[1:]:
        def key(node, col=col):
            ups = [position[u] for u in upstream.get(node.id, []) if u in position]
            return (sum(ups) / len(ups)) if ups else len(col)
        col.sort(key=key)
        position.update({n.id: i for i, n in enumerate(col)})
    return columns


def _second_line(node) -> str:
    """The version and the few facts that tell nodes of a kind apart."""
    detail = node.detail or {}
    parts = [f"v{node.version}"] if node.version not in (None, "") else []
    if detail.get("exists") is False:
        parts.append("not built")
    latest = detail.get("latest_version")
    if latest is not None and str(latest) != str(node.version):
        parts.append(f"newest v{latest}")
    if detail.get("digest"):
        parts.append(f"digest {detail['digest']}")
    if detail.get("model_spec"):
        parts.append(str(detail["model_spec"]))
    runs = detail.get("runs") or []
    if runs:
        plural = "s" if len(runs) > 1 else ""
        parts.append(f"{len(runs)} scoring run{plural}, last {runs[-1].get('run_date')}")
    return " · ".join(parts)


def _fit(text: str, width: int) -> str:
    room = round((width - 2 * PAD) / SMALL_W)
    return text if len(text) <= room else text[:max(1, room - 1)] + "…"


def _tooltip(node) -> str:
    description = (node.detail or {}).get("description")
    return f"{node.id}" + (f" (version {node.version})" if node.version is not None else "") \
        + (f"\n{description}" if description else "")


# --- monitoring --------------------------------------------------------------------------


def _monitoring(d: dict) -> str:
    rows = d["monitoring"]
    if not rows:
        return ("<section id=\"monitoring\"><h2>Monitoring</h2><p class=\"muted\" id=\"no-monitoring\">"
                f"No monitoring yet (sparkml monitor {e(d['model'])}@ALIAS --outcomes TABLE fills it).</p>"
                "</section>")
    periods: dict[str, list[dict]] = {}
    for row in rows:
        periods.setdefault(str(row.get("period")), []).append(row)
    chart = _monitoring_charts(periods)
    boxes = []
    for period, group in periods.items():
        by = group[0].get("by")
        breaches = sum(1 for r in group if r.get("breached"))
        by_text = f' <span class="muted">(by {e(by)})</span>' if by else ""
        breach_text = f' <span class="badge fail">{breaches} breached</span>' if breaches else ""
        box = [f'<h3 class="period">{e(period)}{by_text}{breach_text}</h3>']
        metrics = [r for r in group if r.get("kind") == "metric"]
        drift = [r for r in group if r.get("kind") == "drift"]
        if metrics:
            box.append(_monitor_table(metrics, ("metric", "value", "threshold", "breached", "rows")))
        if drift:
            box.append(_monitor_table(drift, ("feature", "measure", "value", "threshold", "breached",
                                              "rows")))
        boxes.append("<div>" + "".join(box) + "</div>")
    parts = [chart, "<div class=\"periods\">" + "".join(boxes) + "</div>"]
    return "<section id=\"monitoring\"><h2>Monitoring</h2>" + "".join(parts) + "</section>"


def _monitor_table(rows: list[dict], head: tuple[str, ...]) -> str:
    body = []
    for r in rows:
        cells = {"metric": e(r.get("name")), "feature": e(r.get("name")), "measure": e(r.get("measure")),
                 "value": e(number(_float(r.get("value")))),
                 "threshold": e(number(_float(r.get("threshold")))),
                 "breached": "yes" if r.get("breached") else "no", "rows": e(r.get("rows"))}
        klass = " class=\"breach\"" if r.get("breached") else ""
        body.append(f"<tr{klass}>" + "".join(
            f"<td{' class=num' if h in ('value', 'threshold', 'rows') else ''}>{cells[h]}</td>" for h in head)
            + "</tr>")
    return f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(body)}</table>"


def _float(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _monitoring_charts(periods: dict[str, list[dict]]) -> str:
    """A small line chart per metric measured in at least two periods, its threshold dashed."""
    series: dict[str, list[tuple[str, float, float | None]]] = {}
    for period, group in periods.items():
        for r in group:
            if r.get("kind") == "metric" and r.get("value") is not None:
                series.setdefault(r["name"], []).append((period, float(r["value"]),
                                                         _float(r.get("threshold"))))
    charts = {name: points for name, points in series.items() if len(points) >= 2}
    if not charts:
        return ""

    import matplotlib

    matplotlib.use("Agg")  # no display where reports are made
    import matplotlib.pyplot as plt

    figures = []
    for name, points in sorted(charts.items()):
        fig, ax = plt.subplots(figsize=(4.2, 2.6))
        labels = [p for p, _, _ in points]
        ax.plot(range(len(points)), [v for _, v, _ in points], marker="o")
        limits = [t for _, _, t in points if t is not None]
        if limits:
            ax.axhline(limits[-1], linestyle="--", color="#cf222e", linewidth=1, label="threshold")
            ax.legend(loc="best", fontsize=8)
        ax.set_xticks(range(len(points)), labels, rotation=30, fontsize=8)
        ax.set_title(f"{name} per period", fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        figures.append(f"<figure><img alt=\"{e(name)} per period\" src=\"{_data_uri(buffer.getvalue())}\">"
                       f"<figcaption>{e(name)} per period</figcaption></figure>")
    return "<div class=\"figures\">" + "".join(figures) + "</div>"
