"""A real single-node HDFS for tests, on 127.0.0.1 only: a NameNode and a DataNode in one JVM
(MiniDFSCluster, launched by HdfsMiniCluster.java beside this file, from the jars of the YARN
mini-cluster), permissions off, with a HADOOP_CONF_DIR for Spark and for `hdfs-native`.

    with hdfs_minicluster(tmp_path) as cluster:
        hdfs_native.Client(cluster.uri).mkdirs("/lake")
        spark.range(5).write.parquet(f"{cluster.uri}/lake/p")
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .servers import _stop, wait_for
from .yarn import HERE, JARS_DIR, LOG4J, _java_home, _site_xml


@dataclass(frozen=True)
class HdfsCluster:
    uri: str  # hdfs://127.0.0.1:PORT, the NameNode
    conf_dir: Path  # core-site.xml (fs.defaultFS) and hdfs-site.xml, for HADOOP_CONF_DIR
    log: Path  # the NameNode's and DataNode's own log

    @property
    def env(self) -> dict[str, str]:
        return {"HADOOP_CONF_DIR": str(self.conf_dir)}


def _tail(path: Path, lines: int = 30) -> str:
    """The end of the log, stack frames left out: what failed, not where."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join([line for line in text.splitlines() if not line.startswith("\tat ")][-lines:])


@contextmanager
def hdfs_minicluster(workdir: Path):
    """Start the cluster, wait until its DataNode has registered, yield an `HdfsCluster`."""
    subprocess.run(["bash", str(HERE / "yarn_jars.sh"), str(JARS_DIR)], check=True)
    workdir.mkdir(parents=True, exist_ok=True)
    # Without it the DataNode logs a line per block directory it locks (1024 of them) on start.
    (workdir / "hdfs-log4j.properties").write_text(
        LOG4J + "log4j.logger.org.apache.hadoop.hdfs.server.datanode.fsdataset.impl.FsDatasetImpl=WARN\n")
    ready = workdir / "hdfs-ready.properties"
    ready.unlink(missing_ok=True)
    # Jetty unpacks the NameNode's and DataNode's web apps under java.io.tmpdir: not /tmp's.
    tmp = workdir / "hdfs-tmp"
    tmp.mkdir(exist_ok=True)
    settings = {"hdfs.minidfs.basedir": str(workdir / "hdfs"), "hadoop.tmp.dir": str(tmp)}
    log = workdir / "hdfs.log"
    logs = open(log, "w")
    # stdin is a pipe the launcher reads to its end: it stops when this process dies, too.
    # The client JIT only and the serial collector: up some 4 s sooner (9 s, not 13) on two
    # cores, and a test cluster moves too little data for the faster compiled code to pay.
    proc = subprocess.Popen(
        [f"{_java_home()}/bin/java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
         "-Djava.net.preferIPv4Stack=true", f"-Djava.io.tmpdir={tmp}",
         f"-Dtest.build.data={workdir / 'hdfs'}",
         f"-Dlog4j.configuration=file:{workdir / 'hdfs-log4j.properties'}",
         "-cp", str(JARS_DIR / "*"), str(HERE / "HdfsMiniCluster.java"), str(ready),
         *(f"{key}={value}" for key, value in settings.items())],
        stdin=subprocess.PIPE, stdout=logs, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        try:
            wait_for(ready.exists, "HDFS mini-cluster", timeout=120, procs=[proc])
        except (TimeoutError, RuntimeError) as error:
            raise type(error)(f"{error}; the end of {log}:\n{_tail(log)}") from None
        bound = dict(line.split("=", 1) for line in ready.read_text().splitlines())
        uri = bound["fs.defaultFS"]
        conf_dir = workdir / "hdfs-conf"
        conf_dir.mkdir(exist_ok=True)
        _site_xml(conf_dir / "core-site.xml", {"fs.defaultFS": uri})
        _site_xml(conf_dir / "hdfs-site.xml", {
            "dfs.namenode.rpc-address": bound["dfs.namenode.rpc-address"],
            "dfs.namenode.http-address": bound["dfs.namenode.http-address"],
            # One DataNode: a client asking for three replicas would only log complaints.
            "dfs.replication": "1",
            # Connect to the DataNode by the address it registered from, 127.0.0.1.
            "dfs.client.use.datanode.hostname": "false",
            # With no other DataNode to swap in, a failing write pipeline cannot be repaired.
            "dfs.client.block.write.replace-datanode-on-failure.enable": "false",
        })
        yield HdfsCluster(uri=uri, conf_dir=conf_dir, log=log)
    finally:
        _stop([proc])  # SIGTERM: the launcher shuts the cluster down, then exits
        proc.stdin.close()
        logs.close()
