// A single-node YARN mini-cluster (one ResourceManager, one NodeManager) for tests, run as
// `java -cp JARS tests/YarnMiniCluster.java READY_FILE [KEY=VALUE...]`: Java 17 compiles a
// single source file on launch, so there is no build step. KEY=VALUE pairs are YARN settings.
// Once a NodeManager has registered it writes the addresses the cluster really bound to
// READY_FILE (KEY=VALUE lines), and it runs until its stdin closes or it gets SIGTERM.

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;

public class YarnMiniCluster {
    // What a client's yarn-site.xml needs; the cluster asks for port 0 and records the real one.
    private static final String[] PUBLISHED = {
        YarnConfiguration.RM_ADDRESS,
        YarnConfiguration.RM_SCHEDULER_ADDRESS,
        YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS,
        YarnConfiguration.RM_ADMIN_ADDRESS,
        YarnConfiguration.RM_WEBAPP_ADDRESS,
    };

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
        YarnConfiguration conf = new YarnConfiguration();
        for (int i = 1; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            conf.set(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        // Its work directory (local dirs, container logs) goes under -Dtest.build.data.
        MiniYARNCluster cluster = new MiniYARNCluster("yarn", 1, 1, 1);
        Runtime.getRuntime().addShutdownHook(new Thread(YarnMiniCluster::endContainers));
        cluster.init(conf);
        cluster.start();
        if (!cluster.waitForNodeManagersToConnect(60_000)) {
            throw new IllegalStateException("no NodeManager registered within 60 s");
        }
        publish(cluster, ready);
        while (System.in.read() != -1) {
            // The parent holds our stdin open; end of input means it is gone.
        }
    }

    // What must not outlive this JVM is the containers: they run in sessions of their own, so no
    // signal to our process group reaches them. Hadoop's own stop() would end them too, but
    // takes some 17 s (the NodeManager waits on finished applications and on its log-deletion
    // timer); everything else of the cluster is in memory or in the work directory.
    private static void endContainers() {
        List<ProcessHandle> containers = ProcessHandle.current().descendants().toList();
        containers.forEach(ProcessHandle::destroy);
        long deadline = System.nanoTime() + 10_000_000_000L;
        for (ProcessHandle container : containers) {
            try {
                container.onExit().get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (Exception stillRunning) {
                container.destroyForcibly();
            }
        }
    }

    private static void publish(MiniYARNCluster cluster, Path ready) throws IOException {
        List<String> lines = new ArrayList<>();
        for (String key : PUBLISHED) {
            lines.add(key + "=" + cluster.getConfig().get(key));
        }
        lines.add(YarnConfiguration.NM_LOG_DIRS + "="
                + cluster.getNodeManager(0).getConfig().get(YarnConfiguration.NM_LOG_DIRS));
        // Written whole, then renamed: the caller polls for the file and must not read half of it.
        Path partial = ready.resolveSibling(ready.getFileName() + ".partial");
        Files.write(partial, lines);
        Files.move(partial, ready, StandardCopyOption.ATOMIC_MOVE);
    }
}
