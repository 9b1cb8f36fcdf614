package dev.curvewatch.workers;

import dev.curvewatch.workers.internal.MetricsServer;
import dev.curvewatch.workers.internal.WorkerLoop;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A Curvewatch worker: a member of the captures consumer group that validates every capture,
 * dead-letters the bad ones, keeps the A and G running factors of the layers in its partitions
 * and checkpoints them exactly once (chunks, manifest and offsets in one Kafka transaction).
 *
 * <pre>{@code
 * try (Worker w = Worker.start(WorkerConfig.of(Map.of("bootstrap", "127.0.0.1:9092")))) {
 *     w.awaitTermination();   // until close() from another thread or a shutdown hook
 * }
 * }</pre>
 */
public final class Worker implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(Worker.class);

    private final WorkerConfig config;
    private final WorkerMetrics metrics = new WorkerMetrics();
    private final WorkerLoop loop;
    private final Thread thread;
    private final CountDownLatch finished = new CountDownLatch(1);
    private final MetricsServer http;
    private volatile Throwable failure;

    private Worker(WorkerConfig config) throws IOException {
        this.config = config;
        this.loop = new WorkerLoop(config, metrics, codeVersion());
        metrics.gauge("curvewatch_worker_up", () -> "running".equals(loop.phase()) || "restoring".equals(loop.phase()) ? 1 : 0);
        this.http = config.metricsPort() >= 0
                ? new MetricsServer(config.metricsHost(), config.metricsPort(), metrics::scrape, this::health)
                : null;
        this.thread = new Thread(this::runLoop, "curvewatch-worker-" + config.instanceId());
    }

    /** Starts the poll loop on its own thread (and the metrics endpoint if configured). */
    public static Worker start(WorkerConfig config) throws IOException {
        Worker w = new Worker(config);
        w.thread.start();
        return w;
    }

    private void runLoop() {
        try {
            loop.run();
        } catch (Throwable t) {
            failure = t;
            log.error("worker stopped on a fatal error", t);
        } finally {
            finished.countDown();
        }
    }

    public WorkerMetrics metrics() {
        return metrics;
    }

    public WorkerConfig config() {
        return config;
    }

    /** Port of the /metrics and /health endpoint, or -1 if none. */
    public int metricsPort() {
        return http == null ? -1 : http.port();
    }

    /** starting, running, restoring, recovering (rolling back after a failed checkpoint), stopping, stopped. */
    public String phase() {
        return loop.phase();
    }

    public int ownedPartitions() {
        return loop.ownedPartitions();
    }

    public double lagRecords() {
        return loop.lagRecords();
    }

    /** The fatal error that ended the loop, or null. */
    public Throwable failure() {
        return failure;
    }

    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        return finished.await(timeout, unit);
    }

    public void awaitTermination() throws InterruptedException {
        finished.await();
    }

    MetricsServer.Health health() {
        String phase = loop.phase();
        long age = loop.lastPollMillis() == 0 ? -1 : System.currentTimeMillis() - loop.lastPollMillis();
        boolean up = failure == null && ("running".equals(phase) || "restoring".equals(phase)) && age >= 0 && age < 60_000;
        return new MetricsServer.Health(up, phase, config.instanceId(), loop.ownedPartitions(), loop.ownedLayers(),
                loop.lagRecords(), age, failure);
    }

    /** Graceful stop: final checkpoint, leave the group, close clients. Waits up to 60 s. */
    @Override
    public void close() {
        loop.requestStop();
        try {
            if (!finished.await(60, TimeUnit.SECONDS)) {
                log.warn("worker did not stop within 60 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (http != null) {
            http.close();
        }
    }

    static String codeVersion() {
        String v = Worker.class.getPackage().getImplementationVersion();
        return v != null ? v : "0.1.0-SNAPSHOT";
    }
}
