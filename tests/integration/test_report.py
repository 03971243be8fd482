"""`sparkml report`: the page's pieces as functions, then the slice project's champion's page
opened in headless Chromium (Debian's package): a screenshot, the key figures in its DOM, no
console error, every picture decoded."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import prerequisites
import pytest
from conftest import run_main

from sparkml_platform.insight import report
from sparkml_platform.storage import places


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with the page's console on stderr (a page line reads `CONSOLE`)."""
    command = prerequisites.find("chromium")
    assert command, "Chromium is missing: `make test` installs it or names the command that does"
    return subprocess.run([command, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", "--v=0", *args], capture_output=True, text=True,
                          timeout=180)


# Added to a copy of the page for the DOM dump: the count of pictures the browser decoded.
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images], broken = images.filter(i => !i.complete || i.naturalWidth === 0);
  if (broken.length) console.error("broken images: " + broken.map(i => i.alt).join(", "));
  document.body.dataset.decoded = images.length - broken.length;
});</script>"""


def monitoring_rows(spark, config, version: int) -> list[dict]:
    """Three months of the champion's monitoring as the monitoring table keeps it."""
    import datetime as dt

    from sparkml_platform.insight import monitoring
    from sparkml_platform.storage import lake

    rows = []
    for period, auc, psi in (("2013-10", 0.71, 0.05), ("2013-11", 0.66, 0.12), ("2013-12", 0.55, 0.34)):
        at = dt.datetime(2014, 1, 2, 3, 0)
        rows.append((version, "month", period, "metric", "roc_auc", "value", auc, 0.6, auc < 0.6, 900, at))
        rows.append((version, "month", period, "drift", "temp", "psi", psi, 0.2, psi > 0.2, 900, at))
    rows.append((version + 100, "month", "2013-12", "metric", "roc_auc", "value", 0.123, 0.6, True, 9, at))
    schema = ("model_version INT, by STRING, period STRING, kind STRING, name STRING, measure STRING, "
              "value DOUBLE, threshold DOUBLE, breached BOOLEAN, rows BIGINT, monitored_at TIMESTAMP")
    lake.write(spark.createDataFrame(rows, schema),
               places.table(config, monitoring.table_ref("flight_delays")))
    return [dict(zip(("model_version", "by", "period", "kind", "name", "measure", "value", "threshold",
                      "breached", "rows"), r)) for r in rows if r[0] == version]


@pytest.mark.slow
def test_champion_report_in_a_browser(spark, flights_project, tmp_path):
    from lxml import html as lxml_html
    from PIL import Image

    from sparkml_platform.insight import lineage
    from sparkml_platform.config.vocabulary import METRICS
    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.tracking.tracker import Tracker

    source, _ = flights_project
    root = tmp_path / "project"  # a copy: the monitoring rows written here are this test's own
    shutil.copytree(source.parent, root, symlinks=True)
    conf = root / "conf"
    config = open_project(conf, "test")
    tracker = Tracker(config)
    champion = tracker.client.get_model_version_by_alias("flight_delays", "champion")
    version = str(champion.version)
    monitored = monitoring_rows(spark, config, int(version))

    page = tmp_path / "out" / "report.html"
    result = run_main(conf, "report", "flight_delays@champion", "--output", str(page))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"path": str(page), "model": "flight_delays",
                                         "version": version}
    text = page.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    assert "<script" not in text and list(page.parent.iterdir()) == [page]  # no temporary file left

    shot = tmp_path / "report.png"
    shown = chromium(f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dumped = chromium("--dump-dom", probe.as_uri())
    for run in (shown, dumped):
        assert run.returncode == 0, run.stderr[-2000:]
        assert [line for line in run.stderr.splitlines() if ":CONSOLE" in line] == []

    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4000)
    assert len(image.getcolors(maxcolors=1 << 20) or ()) > 500  # text, charts, pictures: not blank

    dom = lxml_html.fromstring(dumped.stdout)
    by_id = lambda ident: dom.get_element_by_id(ident).text_content().strip()  # noqa: E731
    tags = dict(champion.tags)
    assert dom.xpath("//h1")[0].text_content().split() == ["flight_delays", "version", version]
    assert by_id("gate-verdict") == f"gate {tags['gate']}" and by_id("decision") == tags["decision"]
    metrics = tracker.client.get_run(champion.run_id).data.metrics
    for name in METRICS["classification"]:
        assert by_id(f"metric-test-{name}") == report.number(metrics[f"test_{name}"])
        assert by_id(f"metric-validation-{name}") == report.number(metrics[f"validation_{name}"])
    thresholds = [td.text_content() for td in dom.xpath('//section[@id="metrics"]//tr/td[last()-1]')]
    assert ">= 0.5" in thresholds[0] and any("<= 1.0" in t for t in thresholds)
    assert by_id("ts-name") == tags["training_set"] and by_id("ts-version") == tags["training_set_version"]
    assert by_id("ts-digest") == tags["training_set_digest"]
    tables = {tr.xpath("td[1]")[0].text_content(): tr.xpath("td[2]")[0].text_content()
              for tr in dom.xpath('//section[@id="features"]//tr[td]')}
    assert tables == {f"features.{t}": str(v) for t, v in json.loads(tags["feature_tables"]).items()}
    assert by_id("env-id") == tags["environment_id"]

    graph = lineage.graph(config, tracker, f"flight_delays/{version}")
    drawn = [t.text_content() for t in dom.xpath('//section[@id="lineage"]//*[local-name()="g"]'
                                                 '/*[local-name()="text"][1]')]
    assert sorted(drawn) == sorted(n.label for n in graph.nodes)
    assert {n.kind for n in graph.nodes} >= {"source", "feature_table", "training_set", "model_version",
                                             "predictions"}

    images = dom.xpath("//img")
    assert {i.get("alt") for i in images} >= {"ROC curve", "Precision-recall curve", "Confusion matrix",
                                              "Feature importance", "roc_auc per period"}
    assert all(i.get("src").startswith("data:image/png;base64,") for i in images)
    assert dom.body.get("data-decoded") == str(len(images))  # every picture decoded by the browser
    assert len(dom.xpath('//section[@id="lineage"]//*[local-name()="svg"]')) == 1

    periods = [h.text_content().split()[0] for h in dom.xpath('//section[@id="monitoring"]//h3')]
    assert periods == ["2013-10", "2013-11", "2013-12"]
    breached = [[td.text_content() for td in tr.xpath("td")] for tr in
                dom.xpath('//section[@id="monitoring"]//tr[@class="breach"]')]
    expected = [r for r in monitored if r["breached"]]
    assert [row[:2] for row in breached] == [["roc_auc", report.number(r["value"])] if r["kind"] == "metric"
                                             else ["temp", "psi"] for r in expected]
    assert "0.1230" not in dom.get_element_by_id("monitoring").text_content()  # another version's row

    # Another version, to the default place: no monitoring rows for it.
    older = run_main(conf, "report", "flight_delays/1")
    assert older.returncode == 0, older.stderr
    written = Path(json.loads(older.stdout)["path"])
    assert written == root / ".sparkml" / "reports" / "flight_delays-v1.html"
    assert "No monitoring yet" in written.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("ref, message", [
    ("no_such_model", "no registered model named 'no_such_model'"),
    ("flight_delays@nope", "model flight_delays has no alias 'nope'"),
    ("flight_delays/99", "model flight_delays has no version 99"),
])
def test_report_for_an_unknown_model_writes_nothing(flights_project, tmp_path, ref, message):
    conf, _ = flights_project
    out = tmp_path / "r.html"
    result = run_main(conf, "report", ref, "--output", str(out))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
    assert not (conf.parent / ".sparkml" / "reports").exists()


@pytest.mark.slow
def test_report_into_a_directory_is_refused(flights_project, tmp_path):
    conf, _ = flights_project
    result = run_main(conf, "report", "flight_delays@champion", "--output", str(tmp_path))
    assert result.returncode == 2 and f"output {str(tmp_path)!r} is a directory" in result.stderr
    assert list(tmp_path.iterdir()) == []
