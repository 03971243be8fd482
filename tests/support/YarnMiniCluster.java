// A single-node YARN mini-cluster (one ResourceManager, one NodeManager) for tests, run as
// `java -cp JARS tests/YarnMiniCluster.java READY_FILE [KEY=VALUE...]`: Java 17 compiles a
// single source file on launch, so there is no build step. KEY=VALUE pairs are YARN settings.
// Once a NodeManager has registered it writes the addresses the cluster really bound to
// READY_FILE (KEY=VALUE lines), and it runs until its stdin closes or it gets SIGTERM.

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFs;
import org.apache.hadoop.fs.DelegateToFileSystem;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
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
        // Hadoop finds the file system below (named in the core-site.xml on our class path, read
        // by every Configuration, the localizer's own too) through the thread's class loader:
        // this file's classes live in the source launcher's loader, not the system one.
        Thread.currentThread().setContextClassLoader(YarnMiniCluster.class.getClassLoader());
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

    // The NodeManager localizes a packed environment (some 58,000 files) by unpacking it and
    // then setting every file's permissions through the local file system (FSDownload). Without libhadoop
    // (a real cluster has it; this machine does not) Hadoop starts one `chmod` process per
    // file: two minutes per application here. This file system sets them in-process, with
    // java.nio, as libhadoop does; everything else is Hadoop's own local file system.
    public static class LocalFsChmodInProcess extends ChecksumFs {
        public LocalFsChmodInProcess(URI uri, Configuration conf) throws IOException, URISyntaxException {
            super(new Raw(uri, conf));
        }
    }

    static class Raw extends DelegateToFileSystem {
        Raw(URI uri, Configuration conf) throws IOException, URISyntaxException {
            super(uri, new ChmodInProcess(), conf, "file", false);
        }

        @Override
        public int getUriDefaultPort() {
            return -1;  // as Hadoop's RawLocalFs: file: URIs have no port
        }

        @Override
        public boolean isValidName(String src) {
            return true;  // local paths may hold ':' (Hadoop's RawLocalFs allows them too)
        }
    }

    static class ChmodInProcess extends RawLocalFileSystem {
        private static final PosixFilePermission[] BITS = {  // from 0400 down to 0001
            PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE,
            PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
            PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE,
        };

        @Override
        public void setPermission(org.apache.hadoop.fs.Path path, FsPermission permission) throws IOException {
            short mode = permission.toShort();
            Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
            for (int i = 0; i < BITS.length; i++) {
                if ((mode & (0400 >> i)) != 0) {
                    set.add(BITS[i]);
                }
            }
            Files.setPosixFilePermissions(pathToFile(path).toPath(), set);
        }
    }
}
