package dev.curvewatch.cli;

import java.util.concurrent.CountDownLatch;

/**
 * Keeps a started component running until the JVM is told to stop (SIGTERM, Ctrl-C), and closes
 * it on the shutdown hook's own thread. The JVM halts as soon as every shutdown hook has
 * returned, whatever other threads are doing, so a hook that only wakes the main thread lets the
 * JVM halt in the middle of the main thread's close (unflushed producers, no final commit); this
 * hook returns only once the close is done.
 *
 * <pre>{@code
 * try (CurvewatchService service = CurvewatchService.start(c)) {
 *     UntilStopped stop = UntilStopped.watch("service", service);
 *     System.out.println("... Ctrl-C to stop");
 *     stop.await();
 * }   // closing again here is a no-op
 * }</pre>
 */
final class UntilStopped {
    private final CountDownLatch closed = new CountDownLatch(1);

    private UntilStopped() {
    }

    /** Registers the shutdown hook that closes {@code component} (closing it twice must be harmless). */
    static UntilStopped watch(String name, AutoCloseable component) {
        UntilStopped u = new UntilStopped();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                component.close();
            } catch (Exception e) {
                System.err.println("curvewatch " + name + ": close failed: " + e);
            } finally {
                u.closed.countDown();
            }
        }, name + "-stop"));
        return u;
    }

    /** Blocks until the JVM shuts down and the hook has closed the component. */
    void await() throws InterruptedException {
        closed.await();
    }
}
