"""A real single-node Hadoop YARN cluster for tests, on 127.0.0.1 only: a ResourceManager and
a NodeManager in one JVM (MiniYARNCluster, launched by YarnMiniCluster.java beside this file),
with a HADOOP_CONF_DIR that `spark-submit --master yarn` can use.

    with yarn_minicluster(tmp_path) as cluster:
        subprocess.run([spark_submit, "--master", "yarn", *cluster.submit_args(), job],
                       env={**os.environ, **cluster.env, "PYSPARK_PYTHON": sys.executable})
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from .servers import LOOPBACK, _http_json, _stop, wait_for

HERE = Path(__file__).parent
JARS_DIR = HERE.parents[1] / ".sparkml" / "yarn-jars"

# Room for a Spark application master and an executor or two on a 2-core machine.
SETTINGS = {
    # MiniYARNCluster overwrites yarn.nodemanager.resource.memory-mb with this one.
    "yarn.minicluster.yarn.nodemanager.resource.memory-mb": "8192",
    "yarn.nodemanager.resource.cpu-vcores": "4",
    "yarn.scheduler.minimum-allocation-mb": "256",
    "yarn.nodemanager.vmem-check-enabled": "false",
    "yarn.nodemanager.pmem-check-enabled": "false",
    # A nearly full disk would otherwise mark the only node unhealthy and nothing would run.
    "yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage": "99.9",
    # The minicluster jar ships no capacity-scheduler.xml: one queue, and two AMs may run.
    "yarn.scheduler.capacity.root.queues": "default",
    "yarn.scheduler.capacity.root.default.capacity": "100",
    "yarn.scheduler.capacity.maximum-am-resource-percent": "0.5",
}

# What a client's yarn-site.xml needs, as the launcher reports them once bound.
RM_ADDRESSES = ("yarn.resourcemanager.address", "yarn.resourcemanager.scheduler.address",
                "yarn.resourcemanager.resource-tracker.address", "yarn.resourcemanager.admin.address",
                "yarn.resourcemanager.webapp.address")

LOG4J = """\
log4j.rootLogger=INFO,out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%d{HH:mm:ss.SSS} %p %c{1}: %m%n
"""

@dataclass(frozen=True)
class YarnCluster:
    conf_dir: Path  # for HADOOP_CONF_DIR and YARN_CONF_DIR
    web_url: str  # the ResourceManager's web UI and REST API
    logs_dir: Path  # container logs: <application id>/<container id>/{stdout,stderr}
    log: Path  # the ResourceManager's and NodeManager's own log
    staging_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """For spark-submit. The NodeManager is on this machine and so can use pyspark's own
        files where they are, instead of a copy per application."""
        import pyspark

        lib = Path(pyspark.__file__).parent / "python" / "lib"
        return {"HADOOP_CONF_DIR": str(self.conf_dir), "YARN_CONF_DIR": str(self.conf_dir),
                "PYSPARK_ARCHIVES_PATH": ",".join(f"local:{z}" for z in sorted(lib.glob("*.zip")))}

    def submit_args(self) -> list[str]:
        """spark-submit options for this cluster (add --deploy-mode, --jars, the job's own)."""
        import pyspark

        conf = {
            # Without it every submit zips pyspark/jars (456 MB) for the NodeManager to unzip.
            "spark.yarn.jars": f"local:{Path(pyspark.__file__).parent / 'jars'}/*",
            "spark.yarn.stagingDir": self.staging_dir.as_uri(),
            "spark.yarn.maxAppAttempts": "1",  # a failing job fails once, not twice
            "spark.executor.instances": "1",
            # Executors, and the driver in cluster mode, talk on loopback too.
            "spark.executorEnv.SPARK_LOCAL_IP": LOOPBACK,
            "spark.yarn.appMasterEnv.SPARK_LOCAL_IP": LOOPBACK,
        }
        return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


def _java_home() -> str:
    # Containers start `$JAVA_HOME/bin/java`, and the NodeManager passes on only its own JAVA_HOME.
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no java on PATH and no JAVA_HOME: the YARN mini-cluster needs Java 17")
    return str(Path(java).resolve().parent.parent)


def _site_xml(path: Path, properties: dict[str, str]) -> None:
    body = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
                   for k, v in properties.items())
    path.write_text(f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n')


def _node_running(web_url: str) -> bool:
    nodes = (_http_json(f"{web_url}/ws/v1/cluster/nodes")["nodes"] or {}).get("node", [])
    return any(node["state"] == "RUNNING" for node in nodes)


@contextmanager
def yarn_minicluster(workdir: Path):
    """Start the cluster, wait until its NodeManager is RUNNING, yield a `YarnCluster`."""
    subprocess.run(["bash", str(HERE / "yarn_jars.sh"), str(JARS_DIR)], check=True)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "yarn-log4j.properties").write_text(LOG4J)
    # On the cluster's class path, so that every Hadoop Configuration in it reads this: local
    # permissions set in-process (YarnMiniCluster.java says why).
    own_conf = workdir / "minicluster-conf"
    own_conf.mkdir(exist_ok=True)
    _site_xml(own_conf / "core-site.xml",
              {"fs.AbstractFileSystem.file.impl": "YarnMiniCluster$LocalFsChmodInProcess"})
    ready = workdir / "yarn-ready.properties"
    ready.unlink(missing_ok=True)
    java_home = _java_home()
    settings = {**SETTINGS, "hadoop.tmp.dir": str(workdir / "hadoop-tmp")}
    log = workdir / "yarn.log"
    logs = open(log, "w")
    # stdin is a pipe the launcher reads to its end: it stops when this process dies, too.
    proc = subprocess.Popen(
        [f"{java_home}/bin/java", "-Xmx1g", "-Djava.net.preferIPv4Stack=true",
         f"-Dtest.build.data={workdir / 'yarn'}",
         f"-Dlog4j.configuration=file:{workdir / 'yarn-log4j.properties'}",
         "-cp", f"{own_conf}:{JARS_DIR / '*'}", str(HERE / "YarnMiniCluster.java"), str(ready),
         *(f"{key}={value}" for key, value in settings.items())],
        stdin=subprocess.PIPE, stdout=logs, stderr=subprocess.STDOUT, cwd=workdir,
        env={**os.environ, "JAVA_HOME": java_home})
    try:
        wait_for(ready.exists, f"YARN mini-cluster (log: {log})", timeout=180, procs=[proc])
        bound = dict(line.split("=", 1) for line in ready.read_text().splitlines())
        # It binds "localhost"; clients get the address itself, whatever localhost resolves to.
        ports = {key: bound[key].rsplit(":", 1)[1] for key in RM_ADDRESSES}
        conf_dir = workdir / "hadoop-conf"
        conf_dir.mkdir(exist_ok=True)
        _site_xml(conf_dir / "core-site.xml", {"fs.defaultFS": "file:///"})
        _site_xml(conf_dir / "yarn-site.xml",
                  {key: f"{LOOPBACK}:{port}" for key, port in ports.items()})
        web_url = f"http://{LOOPBACK}:{ports['yarn.resourcemanager.webapp.address']}"
        wait_for(lambda: _node_running(web_url), "YARN NodeManager", procs=[proc])
        yield YarnCluster(conf_dir=conf_dir, web_url=web_url, log=log,
                          logs_dir=Path(bound["yarn.nodemanager.log-dirs"]),
                          staging_dir=workdir / "staging")
    finally:
        _stop([proc])  # SIGTERM: its shutdown hook ends the containers
        proc.stdin.close()
        logs.close()
