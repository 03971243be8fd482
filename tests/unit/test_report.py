"""`sparkml report`: the page's pieces as functions, then the slice project's champion's page
opened in headless Chromium (Debian's package): a screenshot, the key figures in its DOM, no
console error, every picture decoded."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sparkml_platform.insight import report
from sparkml_platform.insight.lineage import Graph, Node

SVG = "{http://www.w3.org/2000/svg}"


def hand_graph() -> Graph:
    nodes = (
        Node("raw.flights", "source", "raw.flights", "0", {"format": "csv"}),
        Node("raw.weather", "source", "raw.weather", "2", {"latest_version": 5}),
        Node("entities.flights", "entity_table", "entities.flights", "1"),
        Node("features.weather", "feature_table", "weather <hourly> & co", "4", {"exists": False}),
        Node("trainset:delays@3", "training_set", "delays@3", "3", {"digest": "10-abc"}),
        Node("model:delays/7", "model_version", "delays/7 (champion)", "7", {"model_spec": "delays_gbt"}),
        Node("predictions.delays", "predictions", "predictions.delays", "12",
             {"runs": [{"run_date": "2013-12-30"}, {"run_date": "2013-12-31"}]}),
    )
    edges = (("raw.flights", "entities.flights"), ("raw.weather", "features.weather"),
             ("entities.flights", "trainset:delays@3"), ("features.weather", "trainset:delays@3"),
             ("trainset:delays@3", "model:delays/7"), ("model:delays/7", "predictions.delays"))
    return Graph(nodes=nodes, edges=edges, root="model:delays/7")


def test_lineage_picture_lays_kinds_out_left_to_right():
    graph = hand_graph()
    svg = ET.fromstring(report.lineage_svg(graph))  # well-formed, escaped
    groups = {g.get("data-id"): g for g in svg.iter(f"{SVG}g")}
    assert set(groups) == {n.id for n in graph.nodes}
    labels = {g.get("data-id"): g.findall(f"{SVG}text")[0].text for g in groups.values()}
    assert labels == {n.id: n.label for n in graph.nodes}
    x = {node_id: float(g.find(f"{SVG}rect").get("x")) for node_id, g in groups.items()}
    order = ["raw.flights", "entities.flights", "features.weather", "trainset:delays@3", "model:delays/7",
             "predictions.delays"]
    assert [x[n] for n in order] == sorted(x[n] for n in order) and len({x[n] for n in order}) == 6
    assert x["raw.flights"] == x["raw.weather"]  # one column per kind
    assert len(svg.findall(f"{SVG}path")) == len(graph.edges)
    widths = {g.get("data-id"): g.find(f"{SVG}rect").get("stroke-width") for g in groups.values()}
    assert widths.pop("model:delays/7") != set(widths.values()).pop()  # the reported version outlined
    seconds = {g.get("data-id"): g.findall(f"{SVG}text")[1].text for g in groups.values()}
    assert seconds == {"raw.flights": "v0", "raw.weather": "v2 · newest v5", "entities.flights": "v1",
                       "features.weather": "v4 · not built", "trainset:delays@3": "v3 · digest 10-abc",
                       "model:delays/7": "v7 · delays_gbt",
                       "predictions.delays": "v12 · 2 scoring runs, last 2013-12-31"}


def test_monitoring_section_highlights_breaches_and_charts_metrics():
    rows = [{"model_version": 2, "by": "month", "period": p, "kind": "metric", "name": "roc_auc",
             "measure": "value", "value": v, "threshold": 0.6, "breached": v < 0.6, "rows": 100}
            for p, v in (("2013-10", 0.71), ("2013-11", 0.58))]
    rows.append({"model_version": 2, "by": "month", "period": "2013-11", "kind": "drift", "name": "temp",
                 "measure": "psi", "value": 0.31, "threshold": 0.2, "breached": True, "rows": 100})
    page = report._monitoring({"monitoring": rows, "model": "m"})
    assert page.count("<h3 class=\"period\">") == 2 and "2 breached" in page
    assert page.count("<tr class=\"breach\">") == 2  # the low AUC and the drifted feature
    assert page.count("data:image/png;base64,") == 1  # roc_auc over two periods
    assert "No monitoring yet" in report._monitoring({"monitoring": [], "model": "m"})


def test_a_regressors_page_does_not_miss_the_classifiers_plots():
    png = b"\x89PNG\r\n\x1a\n"
    regressor = report._pictures({"task": "regression", "plots": {"feature_importance.png": png}})
    assert "Feature importance" in regressor and "Not recorded" not in regressor
    classifier = report._pictures({"task": "classification", "plots": {"feature_importance.png": png}})
    assert "Not recorded for this version: ROC curve, Precision-recall curve, Confusion matrix." in classifier
