// A single-node HDFS mini-cluster (one NameNode, one DataNode, both on 127.0.0.1 only) for
// tests, run as `java -cp JARS tests/HdfsMiniCluster.java READY_FILE [KEY=VALUE...]`: Java 17
// compiles a single source file on launch, so there is no build step. KEY=VALUE pairs are HDFS
// settings; `hdfs.minidfs.basedir` is where the cluster keeps its name and data directories
// (formatted afresh on every start). Once the NameNode is out of safe mode and the DataNode has
// registered it writes what a client needs to READY_FILE (KEY=VALUE lines, among them
// fs.defaultFS=hdfs://127.0.0.1:PORT), and it runs until its stdin closes or it gets SIGTERM.

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

import sun.misc.Signal;

public class HdfsMiniCluster {
    private static final CountDownLatch STOP = new CountDownLatch(1);

    public static void main(String[] args) {
        int status = 0;
        try {
            run(Path.of(args[0]), args);
        } catch (Throwable failure) {
            failure.printStackTrace();
            status = 1;
        }
        // Also after a failure: Hadoop's non-daemon threads would otherwise keep the JVM alive.
        System.exit(status);
    }

    private static void run(Path ready, String[] args) throws Exception {
        HdfsConfiguration conf = new HdfsConfiguration();
        // Any local user may write anywhere, and one DataNode is all the replicas there are.
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setInt("dfs.replication", 1);
        // MiniDFSCluster binds the DataNode's ports to 127.0.0.1; let it also call itself that,
        // so a client that connects by DataNode host name (dfs.client.use.datanode.hostname)
        // does not depend on what this machine's own name resolves to.
        conf.set("dfs.datanode.hostname", "127.0.0.1");
        for (int i = 1; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            conf.set(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        // The cluster cannot be stopped from a JVM shutdown hook (the DataNode's shutdown removes
        // Hadoop shutdown hooks, which throws once the JVM is exiting): SIGTERM and SIGINT, like
        // the end of stdin, only tell this thread to stop it.
        for (String name : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(name), signal -> STOP.countDown());
        }
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() != -1) {
                    // The parent holds our stdin open; end of input means it is gone.
                }
            } catch (IOException closed) {
                // as good as the end of input
            }
            STOP.countDown();
        }, "stdin-watch");
        stdin.setDaemon(true);
        stdin.start();
        // Port 0 everywhere: the NameNode's RPC and HTTP, the DataNode's transfer, IPC and HTTP
        // ports are chosen at bind time, all on 127.0.0.1 (MiniDFSCluster's own addresses). Its
        // name and data directories go under hdfs.minidfs.basedir (else -Dtest.build.data),
        // formatted afresh. build() starts both and waits until the DataNode has registered and
        // the NameNode has left safe mode.
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
                .numDataNodes(1)
                .storagesPerDatanode(1)  // not two: half the start-up work and log lines
                .nameNodePort(0)
                .nameNodeHttpPort(0)
                .checkExitOnShutdown(false)
                .build();
        try {
            cluster.waitActive();
            publish(cluster, ready);
            STOP.await();
        } finally {
            cluster.shutdown();  // keeps the base directory: it is the caller's
        }
    }

    private static void publish(MiniDFSCluster cluster, Path ready) throws IOException {
        List<String> lines = new ArrayList<>();
        lines.add("fs.defaultFS=hdfs://127.0.0.1:" + cluster.getNameNodePort());
        lines.add("dfs.namenode.rpc-address=127.0.0.1:" + cluster.getNameNodePort());
        lines.add("dfs.namenode.http-address=127.0.0.1:" + cluster.getNameNode().getHttpAddress().getPort());
        lines.add("dfs.datanode.address=127.0.0.1:" + cluster.getDataNodes().get(0).getXferPort());
        // Written whole, then renamed: the caller polls for the file and must not read half of it.
        Path partial = ready.resolveSibling(ready.getFileName() + ".partial");
        Files.write(partial, lines);
        Files.move(partial, ready, StandardCopyOption.ATOMIC_MOVE);
    }
}
