#!/usr/bin/env bash
# Run a job under jobs/ with spark-submit, shipping the package, the configuration and the
# Delta jars. Masters: local[*] (default), spark://HOST:PORT (standalone), yarn.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${SPARKML_VENV:-$ROOT/.venv}"

usage() {
  cat >&2 <<EOF
usage: spark-submit.sh [--master MASTER] [--deploy-mode client|cluster] [--conf-dir DIR]
                       [--env NAME] [--archives ENV.tar.gz] [--spark-conf KEY=VALUE]...
                       [--lock NAME [--lock-stale-after SECONDS]] [--status-output]
                       JOB [JOB ARGS...]

  MASTER   local[N] or local[*] (default), spark://HOST:PORT, or yarn
  JOB      one of: $(cd "$ROOT/jobs" && ls *.py | sed 's/\.py$//' | tr '\n' ' ')
  --archives  a packed environment (sparkml env pack) for the executors, used as
              ./environment/bin/python on YARN and standalone
  --lock      no overlapping runs: a lock NAME in the lake (run id, host, start time, the
              runner's and the job's process ids) is taken first; a run finding it held
              exits 4 and does nothing. It is held while the runner or its job lives (a
              stop signal to the runner is handed to the job, and the lock released when
              the job has ended); one older than --lock-stale-after (default 21600 s) was
              left by a killed run on another machine: taken over.
  --status-output  for Oozie's <capture-output/>: the job's output goes to stderr, stdout
              gets status=EXIT_CODE, and exit codes 0 and 3 (a gate said no) exit 0

examples:
  ./spark-submit.sh features_build origin_weather_hourly --start 2013-01-01 --end 2013-01-31
  ./spark-submit.sh --master spark://127.0.0.1:7077 score flight_delay_gbt@champion \\
      --input entities.flights_to_score --output predictions.flight_delays --run-date 2013-12-31
  ./spark-submit.sh --master yarn --deploy-mode cluster --archives .sparkml/env.tar.gz run_pipeline flights
EOF
  exit 2
}

MASTER="local[*]"
DEPLOY_MODE="client"
CONF_DIR="${SPARKML_CONF:-$ROOT/conf}"
ENV_NAME="${SPARKML_ENV:-}"
ARCHIVE=""
EXTRA_CONF=()
LOCK=""
LOCK_STALE=21600
STATUS_OUTPUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --master) [[ $# -ge 2 ]] || usage; MASTER="$2"; shift 2 ;;
    --deploy-mode) [[ $# -ge 2 ]] || usage; DEPLOY_MODE="$2"; shift 2 ;;
    --conf-dir) [[ $# -ge 2 ]] || usage; CONF_DIR="$2"; shift 2 ;;
    --env) [[ $# -ge 2 ]] || usage; ENV_NAME="$2"; shift 2 ;;
    --archives) [[ $# -ge 2 ]] || usage; ARCHIVE="$2"; shift 2 ;;
    --spark-conf) [[ $# -ge 2 ]] || usage; EXTRA_CONF+=(--conf "$2"); shift 2 ;;
    --lock) [[ $# -ge 2 ]] || usage; LOCK="$2"; shift 2 ;;
    --lock-stale-after) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; LOCK_STALE="$2"; shift 2 ;;
    --status-output) STATUS_OUTPUT=1; shift ;;
    -h|--help) usage ;;
    --*) echo "spark-submit.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "spark-submit.sh: no JOB given" >&2; usage; }
JOB="$1"; shift
JOB_FILE="$ROOT/jobs/${JOB%.py}.py"
[[ -f "$JOB_FILE" ]] || { echo "spark-submit.sh: no job named '$JOB' under jobs/" >&2; usage; }

case "$MASTER" in
  local|local\[*\]) ;;
  spark://*:*) ;;
  yarn) ;;
  *) echo "spark-submit.sh: unknown master '$MASTER' (local[*], spark://HOST:PORT or yarn)" >&2; usage ;;
esac
case "$DEPLOY_MODE" in
  client|cluster) ;;
  *) echo "spark-submit.sh: --deploy-mode must be client or cluster, not '$DEPLOY_MODE'" >&2; usage ;;
esac
if [[ "$DEPLOY_MODE" == cluster && "$MASTER" != yarn ]]; then
  echo "spark-submit.sh: --deploy-mode cluster is supported on yarn only (Python jobs)" >&2; usage
fi
[[ -d "$CONF_DIR/base" ]] || { echo "spark-submit.sh: no configuration at $CONF_DIR/base" >&2; exit 2; }

PY="$VENV/bin/python"
[[ -x "$PY" ]] || { echo "spark-submit.sh: $PY not found: run 'make setup' first" >&2; exit 2; }
SUBMIT="$VENV/bin/spark-submit"

# The package, the configuration and the project's own packages, zipped for the executors
# (and a cluster-mode driver). A fresh directory per run, so that overlapping runs (cron)
# never ship each other's files.
mkdir -p "$ROOT/.sparkml"
# What runs on this machine killed with SIGKILL left (their runner and their job both gone)
# is removed; a run's `pids` file is written whole (renamed into place), and one that cannot
# be read is taken for a live run's.
HOST="$(hostname)"
for left in "$ROOT"/.sparkml/submit.*; do
  [[ -d "$left" && -f "$left/pids" ]] || continue
  host="" runner="" group=""
  read -r host runner group < "$left/pids" || true
  [[ "$host" == "$HOST" && "$runner" =~ ^[0-9]+$ ]] || continue
  kill -0 "$runner" 2>/dev/null && continue
  [[ "$group" =~ ^[0-9]+$ ]] && kill -0 -- -"$group" 2>/dev/null && continue
  rm -rf "$left"
done
STAGE="$(mktemp -d "$ROOT/.sparkml/submit.XXXXXX")"
record_pids() { echo "$HOST $*" > "$STAGE/pids.new" && mv "$STAGE/pids.new" "$STAGE/pids"; }
record_pids "$$"
LOCK_RUN=""
CHILD=""
cleanup() {
  [[ -n "$LOCK_RUN" ]] && "$PY" -m sparkml_platform.storage.locking release "$CONF_DIR" "$ENV_NAME" "$LOCK" "$LOCK_RUN"
  rm -rf "$STAGE"
}
trap cleanup EXIT
if [[ -n "$LOCK" ]]; then
  # Before anything else: a run that finds the job still running starts no JVM.
  LOCK_RUN="$("$PY" -m sparkml_platform.storage.locking acquire "$CONF_DIR" "$ENV_NAME" "$LOCK" $$ "$LOCK_STALE")"
  echo "spark-submit.sh: lock $LOCK taken by run $LOCK_RUN" >&2
fi
# The jars (Delta's, and S3's for s3a:// places: checked and located by the same code the
# sessions use), the project's packages and its code version, from the configuration.
"$PY" - "$CONF_DIR" "$ENV_NAME" "$STAGE" "$MASTER" "$DEPLOY_MODE" "$ROOT" <<'EOF'
import base64, json, sys
from pathlib import Path
from sparkml_platform.core.errors import SparkmlError
from sparkml_platform.runtime.delta_jars import check, jars_dir
from sparkml_platform.runtime.project import open_project, project_of
from sparkml_platform.runtime.session import driver_java_options
stage, master, deploy_mode = Path(sys.argv[3]), sys.argv[4], sys.argv[5]
try:
    config = open_project(sys.argv[1], sys.argv[2] or None)
    zipped = project_of(config).zip(stage)
    jars = check(jars_dir(config), config.storage_schemes)
except SparkmlError as exc:
    print(f"error: {exc}", file=sys.stderr); sys.exit(exc.exit_code)
(stage / "jars").write_text(",".join(str(p) for p in jars))
# A driver started here maps the class archive made at set-up (the class path must start as
# the archive's did: the log settings are a file, not a class path entry) and takes the
# configured JIT; a cluster-mode driver starts on another machine, without either.
log4j = Path(sys.argv[6]) / "log4j2.properties"
own = config.platform.spark.conf.get("spark.driver.extraJavaOptions")  # platform.yml's, last
options = (f'-Dlog4j.configurationFile="{log4j}" {driver_java_options(config, own, master=master)}'
           if deploy_mode == "client" else "-Dlog4j.configurationFile=log4j2.properties")
(stage / "driver_options").write_text(options.strip())
(stage / "project_zip").write_text(str(zipped or ""))
code = json.dumps(project_of(config).code_version(), sort_keys=True).encode()
(stage / "code_version").write_text(base64.b64encode(code).decode())  # quotes die in YARN's launcher
EOF
JARS="$(cat "$STAGE/jars")"
PY_FILES="$STAGE/sparkml_platform.zip"
PROJECT_ZIP="$(cat "$STAGE/project_zip")"
[[ -n "$PROJECT_ZIP" ]] && PY_FILES="$PY_FILES,$PROJECT_ZIP"
"$PY" - "$ROOT" "$CONF_DIR" "$STAGE" <<'EOF'
import shutil, sys, zipfile
from pathlib import Path
root, conf, stage = map(Path, sys.argv[1:])
shutil.make_archive(str(stage / "sparkml_platform"), "zip", root, "sparkml_platform")
with zipfile.ZipFile(stage / "conf.zip", "w") as archive:
    for path in sorted(conf.rglob("*")):
        rel = path.relative_to(conf)
        if path.is_file() and rel.parts[0] != "local":  # personal settings stay home
            archive.write(path, rel)
EOF

ARGS=(--master "$MASTER" --deploy-mode "$DEPLOY_MODE" --name "sparkml-$JOB"
      --jars "$JARS" --py-files "$PY_FILES"
      --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
      --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
      --conf spark.sql.session.timeZone=UTC
      --conf spark.ui.showConsoleProgress=false
      --driver-java-options "$(cat "$STAGE/driver_options")")
ARCHIVES=()
if [[ -n "$ARCHIVE" ]]; then
  # A packed environment: executors (and a cluster-mode driver) run its Python. Local
  # executors have no working directory to unpack it into.
  [[ "$MASTER" == local* ]] && { echo "spark-submit.sh: --archives needs a cluster master (spark://HOST:PORT or yarn), not $MASTER" >&2; exit 2; }
  [[ -f "$ARCHIVE" ]] || { echo "spark-submit.sh: no archive at $ARCHIVE (build one with: sparkml env pack)" >&2; exit 2; }
  # The Python it was built for and its id, for the job's check before any work.
  PACKED="$("$PY" - "$ARCHIVE" <<'EOF'
import sys
from pathlib import Path
from sparkml_platform.core.errors import SparkmlError
from sparkml_platform.runtime.packing import archive_metadata
try:
    meta = archive_metadata(Path(sys.argv[1]))
except SparkmlError as exc:
    print(f"spark-submit.sh: {exc}", file=sys.stderr); sys.exit(exc.exit_code)
print(meta["python"], meta["environment_id"])
EOF
)"
  ARCHIVES+=("$ARCHIVE#environment")
  ARGS+=(--conf spark.pyspark.python=./environment/bin/python
         --conf spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python
         --conf "spark.sparkml.environment.python=${PACKED% *}"
         --conf "spark.sparkml.environment.id=${PACKED#* }")
else
  # Same machine (local, or a standalone cluster on it): the project's own interpreter.
  export PYSPARK_PYTHON="$PY"
fi
# A local master's tasks run in the driver: OpenBLAS on one thread per task, as sessions
# started from Python have it (session.BLAS_THREADS); executors get it from the session.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
case "$MASTER" in
  # Stay on loopback when everything runs here; a remote master must reach the driver.
  local*|spark://127.0.0.1:*|spark://localhost:*) export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}" ;;
esac
if [[ "$DEPLOY_MODE" == cluster ]]; then
  ARCHIVES+=("$STAGE/conf.zip#conf")
  ARGS+=(--conf spark.yarn.appMasterEnv.SPARKML_CONF=conf
         --conf "spark.yarn.appMasterEnv.SPARKML_CODE_VERSION=$(cat "$STAGE/code_version")")
  [[ -n "$ENV_NAME" ]] && ARGS+=(--conf "spark.yarn.appMasterEnv.SPARKML_ENV=$ENV_NAME")
  # The driver runs in the application master: SPARKML_* settings given here go with it
  # (SPARKML_LAKE_ROOT, SPARKML_MLFLOW_TRACKING_URI: paths and URIs every node can reach).
  while IFS='=' read -r name value; do
    case "$name" in SPARKML_CONF|SPARKML_ENV|SPARKML_VENV) ;; *) ARGS+=(--conf "spark.yarn.appMasterEnv.$name=$value") ;; esac
  done < <(env | grep '^SPARKML_' || true)
else
  export SPARKML_CONF="$CONF_DIR"
  [[ -n "$ENV_NAME" ]] && export SPARKML_ENV="$ENV_NAME"
  # Client mode: the driver runs here. The conf, since spark.pyspark.python (the archive's,
  # for executors) would otherwise win over the PYSPARK_DRIVER_PYTHON variable.
  export PYSPARK_DRIVER_PYTHON="$PY"
  ARGS+=(--conf "spark.pyspark.driver.python=$PY")
fi
if [[ ${#ARCHIVES[@]} -gt 0 ]]; then
  ARGS+=(--archives "$(IFS=,; echo "${ARCHIVES[*]}")")
fi

# Not exec: the staging directory is removed and the lock released when the job ends (trap).
# The job runs in a process group of its own (spark-submit's JVM and the Python driver it
# starts), which this script waits for and hands every stop signal to: a SIGTERM (timeout,
# an Oozie kill) stops the job, and the lock is released only once the whole group has
# ended. The lock names the group too, so a runner killed with SIGKILL leaves it held for as
# long as its job still runs.
# Set before the job starts: a stop signal in between ends the run before it starts one.
trap 'if [[ -n "$CHILD" ]]; then kill -TERM -- -"$CHILD" 2>/dev/null || true; else exit 143; fi' TERM INT HUP
set -m  # background jobs get their own process group
if [[ -n "$STATUS_OUTPUT" ]]; then
  "$SUBMIT" "${ARGS[@]}" "${EXTRA_CONF[@]}" "$JOB_FILE" "$@" >&2 &
else
  "$SUBMIT" "${ARGS[@]}" "${EXTRA_CONF[@]}" "$JOB_FILE" "$@" &
fi
CHILD=$!
set +m
record_pids "$$" "$CHILD"
if [[ -n "$LOCK_RUN" ]]; then
  "$PY" -m sparkml_platform.storage.locking hand_over "$CONF_DIR" "$ENV_NAME" "$LOCK" "$LOCK_RUN" "$CHILD" ||
    echo "spark-submit.sh: the lock $LOCK does not name the job's processes ($CHILD): a SIGKILL of this script would free it" >&2
fi
status=0
while :; do
  wait "$CHILD" && status=0 || status=$?
  # Ended (reaped): $status is its own. Alive, or a zombie the interrupted wait did not reap:
  # a signal woke the wait, which waits again.
  kill -0 "$CHILD" 2>/dev/null || break
done
if (( status > 128 )); then
  # A signal may have cut the last wait short as the job ended: its own code, if bash kept it.
  wait "$CHILD" 2>/dev/null && own=0 || own=$?
  (( own != 127 )) && status=$own
fi
# What the job started and left behind (a Python driver outliving its JVM) ends with it.
if kill -0 -- -"$CHILD" 2>/dev/null; then
  kill -TERM -- -"$CHILD" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 -- -"$CHILD" 2>/dev/null || break; sleep 1; done
  kill -KILL -- -"$CHILD" 2>/dev/null || true
fi
if [[ -n "$STATUS_OUTPUT" ]]; then
  echo "status=$status"
  [[ "$status" -eq 3 ]] && status=0
fi
exit "$status"
