"""The `sparkml` command line. Heavy imports (pyspark, mlflow) happen inside the commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from ..core import envvars
from ..core.errors import GateFailed, JobFailed, SparkmlError
from .scaffold import init as scaffold


class State:
    """The command line's options; the Workspace is opened on first use (`init` needs none)."""

    def __init__(self, conf: str, env: str | None, verbose: bool):
        self.conf_dir, self.env, self.verbose = conf, env, verbose
        self._workspace = None

    @property
    def ws(self):
        if self._workspace is None:
            from ..api.workspace import Workspace  # lazy: `sparkml --help` imports no pydantic

            self._workspace = Workspace(self.conf_dir, self.env)
        return self._workspace


pass_state = click.make_pass_decorator(State)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def emit(data, as_json: bool, human=None) -> None:
    if as_json or human is None:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human(data)


def table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _cell(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return "-" if value is None else str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--conf", default="conf", show_default=True, envvar=envvars.SPARKML_CONF.name,
              help="Configuration directory holding base/ and overlays.")
@click.option("--env", default=None, envvar=envvars.SPARKML_ENV.name,
              help="Overlay conf/ENV/ on conf/base/.")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.pass_context
def cli(ctx, conf, env, verbose):
    """sparkml: features, training sets, training, registry and batch scoring on Spark + Delta."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    ctx.obj = State(conf, env, verbose)


# --- a new project ------------------------------------------------------------------------


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--package", help="Name of the project's Python package (default: from DIRECTORY).")
def init(directory, package):
    """Scaffold a project in DIRECTORY (new or empty): conf/base/*.yml with commented examples,
    conf/local/ for your own settings (git-ignored), a package for your transformations and
    estimators, a README and a .gitignore."""
    made = scaffold(Path(directory), package)
    click.echo(f"project {made['project']} in {made['directory']} (package {made['package']}/):")
    for name in made["files"]:
        click.echo(f"  {name}")
    click.echo(f"next: cd {directory} && edit conf/base/*.yml, then sparkml run PIPELINE")


# --- sources ------------------------------------------------------------------------------


@cli.group()
def sources():
    """Raw tables and entity tables: load, list, show."""


@sources.command("load")
@click.argument("names", nargs=-1)
@pass_state
def sources_load(state, names):
    """Load raw sources (all when no NAME is given) into the lake as raw.NAME."""
    for loaded in state.ws.load_sources(list(names)):
        click.echo(json.dumps(loaded))


@sources.command("list")
@json_option
@pass_state
def sources_list(state, as_json):
    """Raw sources (raw.NAME) and entity tables (entities.NAME), with their lake versions."""
    emit([s.to_dict() for s in state.ws.sources.list()], as_json,
         lambda rows: table(rows, ["table", "version", "last_written", "owner", "source", "description"]))


@sources.command("show")
@click.argument("name")
@json_option
@pass_state
def sources_show(state, name, as_json):
    """Source NAME (or raw.NAME) or entity table entities.NAME: definition, schema, Delta
    history and what reads it."""
    emit(state.ws.sources.show(name).to_dict(), as_json, _show_source)


def _show_source(d: dict) -> None:
    click.echo(f"{d['table']}  ({d['kind'].replace('_', ' ')})  {d['description']}")
    click.echo(f"owner: {d['owner'] or '-'}\nfrom: {d['source']} ({d['format']})\nlake: {d['path']}")
    if d.get("filter"):
        click.echo(f"filter: {d['filter']}")
    if not d["loaded"]:
        click.echo(d["status"])
    else:
        click.echo(f"schema ({len(d['schema'])} columns):")
        for column in d["schema"]:
            click.echo(f"  {column['name']}  {column['type']}" + ("" if column["nullable"] else "  not null")
                       + (f"  -- {column['comment']}" if column.get("comment") else ""))
        click.echo("history:")
        table(d["history"], ["version", "timestamp", "operation", "rows_written"])
    click.echo("read by:")
    for what, names in d["read_by"].items():
        click.echo(f"  {what.replace('_', ' ')}: {', '.join(names) or '-'}")


# --- features -----------------------------------------------------------------------------


@cli.group()
def features():
    """Feature tables: list, search, show, build, publish, vacuum."""


@features.command("list")
@json_option
@pass_state
def features_list(state, as_json):
    emit([t.to_dict() for t in state.ws.features.list()], as_json,
         lambda rows: table(rows, ["name", "version", "last_built", "newest_event_time", "owner",
                                   "keys", "description"]))


@features.command("search")
@click.argument("text")
@json_option
@pass_state
def features_search(state, text, as_json):
    emit([t.to_dict() for t in state.ws.features.search(text)], as_json,
         lambda rows: table(rows, ["name", "owner", "tags", "description"]))


@features.command("show")
@click.argument("name")
@click.option("--compare", nargs=2, type=int, metavar="V1 V2",
              help="Show how each feature's statistics shifted from version V1 to V2.")
@json_option
@pass_state
def features_show(state, name, compare, as_json):
    shown = state.ws.features.show(name, compare=compare)
    emit(shown, as_json, _show_shift if compare else lambda d: click.echo(json.dumps(d, indent=2, default=str)))


def _show_shift(data: dict) -> None:
    old, new = data["versions"]
    click.echo(f"{data['table']}: version {old} -> {new}, rows {data['rows'][0]} -> "
               f"{data['rows'][1]} ({data['rows'][2]:+d})")
    rows = []
    for feature, measures in data["features"].items():
        for measure, (a, b, shift) in measures.items():
            rows.append({"feature": feature, "measure": measure, f"v{old}": a, f"v{new}": b,
                         "shift": None if shift is None else round(shift, 6)})
    table(rows, ["feature", "measure", f"v{old}", f"v{new}", "shift"])


@features.command("build")
@click.argument("name")
@click.option("--start", help="First day of the window (YYYY-MM-DD).")
@click.option("--end", help="Last day of the window, included (YYYY-MM-DD).")
@click.option("--chunk-days", type=int, help="Backfill the window in chunks of this many days, "
              "one commit each; the same command again resumes after the last committed chunk.")
@click.option("--full", is_flag=True, help="Rebuild the whole table (default without a window: "
              "only what is missing since the last build).")
@click.option("--retire", is_flag=True, help="Rebuild a changed definition in place although model "
              "versions under an alias were trained on the old one: they are marked stale and no "
              "longer score (else bump the table's version: in features.yml).")
@pass_state
def features_build(state, name, start, end, chunk_days, full, retire):
    """Compute feature table NAME (or NAME@N, an older version) into Delta, one commit per chunk."""
    if (start or end) and full:
        raise click.UsageError("--full rebuilds the whole table: give it without --start/--end")
    if chunk_days and not (start or end):
        raise click.UsageError("--chunk-days splits a window: give --start and --end too")
    built = state.ws.features.build(name, start, end, chunk_days=chunk_days, full=full, retire=retire)
    click.echo(json.dumps(built.to_dict(), default=str))


@features.command("vacuum")
@click.argument("name")
@click.option("--retain-hours", type=click.IntRange(min=0), help="Keep files removed less than this "
              "many hours ago (default: the safe minimum for the training sets, at least 168).")
@pass_state
def features_vacuum(state, name, retain_hours):
    """Delta VACUUM of feature table NAME, refused (exit 2) when it would delete files a
    training-set version needs for trainset rebuild."""
    click.echo(json.dumps(state.ws.features.vacuum(name, retain_hours)))


@features.command("publish")
@click.argument("name")
@click.option("--full", is_flag=True, help="Publish every key again (default: only what changed since "
              "the version published last).")
@pass_state
def features_publish(state, name, full):
    """Put each key's newest row of feature table NAME into the online store."""
    click.echo(json.dumps(state.ws.features.publish(name, full=full).to_dict()))


# --- training sets ------------------------------------------------------------------------


@cli.group()
def trainset():
    """Training sets: list, show, build, rebuild, delete, prune."""


@trainset.command("list")
@json_option
@pass_state
def trainset_list(state, as_json):
    rows = state.ws.training_sets()
    emit(rows, as_json, lambda rows: table(rows, ["name", "version", "created_at", "rows", "digest"]))
    for row in rows:  # listed, and said why its details are missing
        if "damaged" in row:
            click.echo(f"warning: {row['damaged']}", err=True)
        if "deleting" in row:
            click.echo(f"warning: {row['deleting']}", err=True)


@trainset.command("show")
@click.argument("ref")
@json_option
@pass_state
def trainset_show(state, ref, as_json):
    emit(state.ws.training_set_manifest(ref), True)


@trainset.command("rebuild")
@click.argument("ref")
@pass_state
def trainset_rebuild(state, ref):
    """Recompute NAME@VERSION from its manifest (every input at its recorded Delta version)
    and check that the digest is the same. Writes nothing; exit 1 when it differs."""
    result = state.ws.rebuild_training_set(ref)
    click.echo(json.dumps(result))
    if not result["matches"]:
        raise JobFailed(f"rebuilding {result['ref']} gave digest {result['digest']}, "
                        "not the one in its manifest")


@trainset.command("build")
@click.argument("name")
@pass_state
def trainset_build(state, name):
    """Write the next version of training set NAME (point-in-time join) and its manifest."""
    built = state.ws.build_training_set(name)
    click.echo(json.dumps({**{k: built.manifest[k] for k in ("name", "version", "rows", "digest")},
                           "path": built.path,
                           **({"retention": built.pruned} if built.pruned is not None else {})}))


@trainset.command("delete")
@click.argument("ref")
@pass_state
def trainset_delete(state, ref):
    """Delete version NAME@VERSION (its rows and manifest); refused (exit 2) while a registered
    model version was trained on it. Its number is never given to another version."""
    click.echo(json.dumps(state.ws.delete_training_set(ref)))


@trainset.command("prune")
@click.argument("name")
@click.option("--keep", type=click.IntRange(min=1), help="Newest versions to keep (default: the "
              "training set's retention.keep in training_sets.yml).")
@pass_state
def trainset_prune(state, name, keep):
    """Delete the versions of NAME beyond the newest N, except every version a registered model
    version was trained on."""
    click.echo(json.dumps(state.ws.prune_training_sets(name, keep)))


# --- training, registry, scoring ----------------------------------------------------------


@cli.command()
@click.argument("model")
@click.option("--no-tune", is_flag=True, help="Train with the fixed hyper-parameters only.")
@pass_state
def train(state, model, no_tune):
    """Train MODEL on its training set's newest version, evaluate, register, apply its gate."""
    click.echo(json.dumps(state.ws.train(model, tune=not no_tune).to_dict(), default=str))


@cli.command()
@click.argument("model")
@pass_state
def retrain(state, model):
    """Rebuild MODEL's inputs (features, training set) as of now, tune, train, compare with the
    champion on the same fresh test split, and promote only if every gate passes."""
    click.echo(json.dumps(state.ws.retrain(model, echo=click.echo).to_dict(), default=str))


@cli.group()
def models():
    """Registered models: list, show."""


@models.command("list")
@json_option
@pass_state
def models_list(state, as_json):
    emit([m.to_dict() for m in state.ws.models.list()], as_json,
         lambda rows: table(rows, ["name", "versions", "latest_version", "aliases"]))


@models.command("show")
@click.argument("ref")
@json_option
@pass_state
def models_show(state, ref, as_json):
    emit(state.ws.models.show(ref).to_dict(), True)


@cli.command()
@click.argument("model")
@click.option("--input", "input_table", required=True, help="Entity table, e.g. entities.NAME.")
@click.option("--output", "output_table", required=True, help="Predictions table, e.g. predictions.NAME.")
@click.option("--run-date", help="Partition to (re)write, YYYY-MM-DD (default: today, UTC).")
@pass_state
def score(state, model, input_table, output_table, run_date):
    """Score MODEL[@ALIAS|/VERSION] on the entity rows of --input into --output."""
    click.echo(json.dumps(state.ws.score(model, input_table, output_table, run_date).to_dict()))


@cli.command()
@click.argument("model", envvar="SPARKML_SERVE_MODEL")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--poll-seconds", default=30.0, show_default=True, type=float,
              help="How often an alias is checked for a new version.")
@click.option("--no-request-log", is_flag=True, help="Do not append requests to predictions.online_MODEL.")
@pass_state
def serve(state, model, host, port, poll_seconds, no_request_log):
    """Serve MODEL[@ALIAS|/VERSION] over HTTP: POST /predict with entity rows; features come from
    the online store (sparkml features publish)."""
    state.ws.serve(model, host=host, port=port, poll_seconds=poll_seconds, log_requests=not no_request_log)


@cli.command()
@click.argument("model")
@click.option("--outcomes", required=True, help="Lake table with the entity keys and what happened "
              "(the training set's label expression must evaluate on it), e.g. entities.NAME.")
@click.option("--run-date", help="Only the predictions of this scoring run date (YYYY-MM-DD).")
@click.option("--by", type=click.Choice(["run_date", "day", "week", "month"]), default="run_date",
              show_default=True, help="The periods measured: scoring run dates, or the rows' event time.")
@click.option("--predictions", help="Read this predictions table (default: every table the version's "
              "scoring runs wrote, and the online request log).")
@pass_state
def monitor(state, model, outcomes, run_date, by, predictions):
    """Performance of MODEL[@ALIAS|/VERSION] once outcomes arrive, and the drift of its inputs
    from its training set, per period; exit 3 when a metric is below its floor."""
    try:
        result = state.ws.monitor(model, outcomes, run_date=run_date, by=by, predictions=predictions)
    except GateFailed as exc:
        if exc.result:
            _print_monitoring(exc.result)
        raise
    _print_monitoring(result)


def _print_monitoring(result: dict) -> None:
    click.echo(f"model {result['model']} version {result['version']} against {result['outcomes']}, "
               f"by {result['by']} (kept in {result['table']}, MLflow run {result['monitor_run_id']}):")
    metrics = sorted({m for values in result["periods"].values() for m in values if m != "rows"})
    table([{"period": p, "rows": v["rows"], **{m: round(v[m], 4) for m in metrics if m in v}}
           for p, v in result["periods"].items()], ["period", "rows", *metrics])
    worst = {p: max(f.items(), key=lambda kv: kv[1]["psi"]) for p, f in result["drift"].items() if f}
    if worst:
        click.echo("largest input drift per period:")
        table([{"period": p, "feature": f, "psi": v["psi"], "ks": v["ks"]} for p, (f, v) in worst.items()],
              ["period", "feature", "psi", "ks"])
    drift = [b for b in result["breaches"] if b["kind"] == "drift"]
    for breach in result["breaches"]:
        if breach["kind"] == "metric":
            click.echo(f"breach: {breach['text']}")
    if drift:
        click.echo(f"drift: {len(drift)} measures above their ceilings, in "
                   + ", ".join(sorted({b['name'] for b in drift})))


@cli.group()
def schedule():
    """Schedules (schedules.yml): render for cron or Oozie, list the next runs."""


@schedule.command("list")
@json_option
@pass_state
def schedule_list(state, as_json):
    emit(state.ws.schedules.list(), as_json,
         lambda rows: table(rows, ["schedule", "job", "cron", "next_run", "runs", "after"]))


@schedule.command("render")
@click.option("--target", type=click.Choice(["cron", "oozie"]), required=True)
@click.option("--output", help="Directory for the files (cron: .sparkml/schedules, oozie: .sparkml/oozie).")
@click.option("--schedule", "name", help="Only this schedule.")
@pass_state
def schedule_render(state, target, output, name):
    """cron: a runner script per schedule and, on stdout, the crontab lines that start them
    (install with: sparkml schedule render --target cron | crontab -). oozie: workflow.xml,
    coordinator.xml and job.properties per schedule."""
    rendered = state.ws.schedules.render(target, output, name)
    for line in rendered.crontab:
        click.echo(line)
    for path in rendered.files:
        click.echo(f"wrote {path}", err=True)


# --- environment and lineage --------------------------------------------------------------


@cli.group()
def env():
    """Environment artifacts: capture, show, diff, pack."""


@env.command("capture")
@json_option
@pass_state
def env_capture(state, as_json):
    """Record the running environment (Python, every package, Spark, Java, Scala, Delta) under
    its content-hash id."""
    captured = state.ws.env.capture()
    emit({"id": captured["id"], "path": captured["path"], "python": captured["python"],
          "spark": captured.get("spark"), "packages": len(captured["packages"])}, as_json,
         lambda d: click.echo(f"{d['id']}  python {d['python']}  spark {d['spark']}  "
                              f"{d['packages']} packages  {d['path']}"))


@env.command("show")
@click.argument("ref", required=False)
@json_option
@pass_state
def env_show(state, ref, as_json):
    """Show environment REF (an id, a model reference or a run id); the running one without REF."""
    emit(state.ws.env.show(ref), as_json, lambda d: click.echo(
        f"id {d['id']}\npython {d['python']}  spark {d.get('spark', '-')}  "
        f"java {d.get('java', '-')}  delta {d.get('delta', '-')}\n"
        + "\n".join(f"  {k}=={v}" for k, v in d["packages"].items())))


@env.command("diff")
@click.argument("ref_a")
@click.argument("ref_b", required=False)
@json_option
@pass_state
def env_diff(state, ref_a, ref_b, as_json):
    """Packages added, removed and changed from REF_A to REF_B (default: the running one)."""
    emit(state.ws.env.diff(ref_a, ref_b), as_json, _print_diff)


def _print_diff(d: dict) -> None:
    click.echo(f"{d['from']} -> {d['to'] or 'running'}: " + ("identical" if d["identical"] else
               f"{len(d['added'])} added, {len(d['removed'])} removed, {len(d['changed'])} changed"))
    for name, version in d["added"].items():
        click.echo(f"  + {name} {version}")
    for name, version in d["removed"].items():
        click.echo(f"  - {name} {version}")
    for name, (old, new) in d["changed"].items():
        click.echo(f"  ~ {name} {old} -> {new}")


@env.command("pack")
@click.argument("ref", required=False)
@click.option("--output-dir", default=None, help="Default: .sparkml/envs/ENVIRONMENT_ID/")
@click.option("--no-archive", is_flag=True, help="Only the conda file, Dockerfile and requirements.")
@pass_state
def env_pack(state, ref, output_dir, no_archive):
    """Build environment REF (default: the running one) from its metadata: a packed virtual
    environment for YARN and standalone executors (environment.tar.gz, for the Python it
    states), a conda file (environment.yml) and a Dockerfile, all pinning the captured versions."""
    click.echo(json.dumps(state.ws.env.pack(ref, output_dir, archive=not no_archive)))


@cli.command()
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "dot"]), default=None,
              help="text (default): trees up and down from REF; json: nodes and edges; dot: Graphviz.")
@json_option
@pass_state
def lineage(state, ref, fmt, as_json):
    """The lineage graph of REF, from the raw sources to the predictions. REF: a source
    (raw.NAME or NAME), entities.NAME, a feature table, a trainset[@v], a model[@alias|/v]
    or predictions.NAME."""
    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} disagree: give one of them")
    found = state.ws.lineage(ref)
    for warning in found.warnings:
        click.echo(f"warning: {warning}", err=True)
    fmt = "json" if as_json else fmt or "text"
    if fmt == "json":
        click.echo(json.dumps(found.to_dict(), indent=2, default=str))
    else:
        click.echo(found.to_dot() if fmt == "dot" else found.to_text(), nl=fmt != "dot")


@cli.command()
@click.argument("model")
@click.option("--output", help="The HTML file to write (default: .sparkml/reports/MODEL-vVERSION.html "
              "in the project).")
@pass_state
def report(state, model, output):
    """One static HTML page on MODEL[@ALIAS|/VERSION]: metrics against the thresholds and the
    champion, the gate verdict, ROC/PR/confusion pictures, feature importances, the training
    set, feature tables, environment, lineage and monitoring history."""
    click.echo(json.dumps(state.ws.report(model, output).to_dict()))


# --- pipelines ----------------------------------------------------------------------------


@cli.command()
@click.argument("pipeline")
@click.option("--force", is_flag=True, help="Run every step, also those whose inputs did not change "
              "since they last ran (by default skipped as up to date).")
@pass_state
def run(state, pipeline, force):
    """Run the steps PIPELINE declares in pipelines.yml, then print a summary. A step whose
    inputs did not change since it last ran is skipped ("up to date")."""
    report = state.ws.run(pipeline, echo=click.echo, force=force)
    click.echo(state.ws.summary(report))


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="sparkml", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return 2  # bad usage
    except SparkmlError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - any other failure is a failed job, exit 1
        if "-v" in (argv or sys.argv) or "--verbose" in (argv or sys.argv):
            raise
        click.echo(f"error: job failed: {type(exc).__name__}: {exc}", err=True)
        return 1
    return 0

