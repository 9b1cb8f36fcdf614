package dev.curvewatch.workers;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Process entry point of a worker without the CLI (used by the kill -9 tests and scripts):
 * {@code java dev.curvewatch.workers.WorkerMain [--config FILE] [key=value ...]}. Exit code 0 after
 * a graceful stop (SIGTERM / Ctrl-C: final checkpoint), 1 after a fatal error, 2 on bad arguments.
 */
public final class WorkerMain {
    private WorkerMain() {
    }

    public static void main(String[] args) throws Exception {
        Path file = null;
        Map<String, String> overrides = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--config") && i + 1 < args.length) {
                file = Path.of(args[++i]);
            } else if (args[i].contains("=")) {
                int eq = args[i].indexOf('=');
                overrides.put(args[i].substring(0, eq), args[i].substring(eq + 1));
            } else {
                System.err.println("usage: WorkerMain [--config FILE] [key=value ...]; keys: " + WorkerConfig.defaults().keySet());
                System.exit(2);
            }
        }
        System.exit(run(WorkerConfig.load(file, System.getenv(), overrides)));
    }

    /**
     * Config from the file (may be null), {@code CURVEWATCH_WORKER_*} and the overrides, then
     * {@link #run(WorkerConfig)}: the entry the {@code curvewatch worker} command calls.
     */
    public static int run(Path configFile, Map<String, String> overrides) throws Exception {
        return run(WorkerConfig.load(configFile, System.getenv(), overrides));
    }

    /** Runs a worker until SIGTERM/SIGINT or a fatal error; returns the exit code. */
    public static int run(WorkerConfig config) throws Exception {
        Worker worker = Worker.start(config);
        Thread hook = new Thread(worker::close, "curvewatch-worker-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        System.out.println("curvewatch worker " + config.instanceId() + " started; metrics port " + worker.metricsPort());
        System.out.flush();
        worker.awaitTermination();
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException ignored) {
            // already shutting down
        }
        worker.close();
        return worker.failure() == null ? 0 : 1;
    }
}
