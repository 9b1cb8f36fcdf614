package dev.curvewatch.service.internal;

import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.common.errors.WakeupException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;

/**
 * A consumer thread's life, shared by the service's two loops: run {@link #loop} until
 * {@link #requestStop}, remember a fatal error instead of dying silently, always close the
 * consumer, and report liveness (last poll, failure) for the health endpoint.
 */
abstract class ConsumerLoop implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(ConsumerLoop.class);
    /** A loop silent for longer than this reports DOWN. */
    private static final long STALE_MS = 60_000;

    protected final Consumer<byte[], byte[]> consumer;
    private final String name;
    private volatile boolean stop;
    private volatile long lastPollMs;
    private volatile Throwable failure;

    ConsumerLoop(String name, Consumer<byte[], byte[]> consumer) {
        this.name = name;
        this.consumer = consumer;
    }

    /** Polls and handles records while {@link #stopping()} is false. */
    protected abstract void loop() throws InterruptedException;

    protected final boolean stopping() {
        return stop;
    }

    /** Called after each poll (or wait) so that the health check sees the loop alive. */
    protected final void polled() {
        lastPollMs = System.currentTimeMillis();
    }

    @Override
    public final void run() {
        try {
            loop();
        } catch (WakeupException e) {
            if (!stop) {
                failure = e;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (Throwable t) {
            failure = t;
            LOG.error("{} loop stopped on a fatal error", name, t);
        } finally {
            consumer.close(Duration.ofSeconds(5));
        }
    }

    public final void requestStop() {
        stop = true;
        consumer.wakeup();
    }

    /** Closes the consumer of an instance whose thread never ran (a start that failed after building it). */
    public final void closeUnstarted() {
        consumer.close(Duration.ofSeconds(5));
    }

    public final Throwable failure() {
        return failure;
    }

    /** Up: its thread runs, no fatal error, and it polled within the last minute. */
    public final boolean isUp(Thread thread) {
        return thread.isAlive() && failure == null && System.currentTimeMillis() - lastPollMs < STALE_MS;
    }

    /** What the health endpoint says of it. */
    public final String detail() {
        Throwable f = failure;
        return f != null ? f.toString() : "last poll " + (System.currentTimeMillis() - lastPollMs) + " ms ago";
    }
}
