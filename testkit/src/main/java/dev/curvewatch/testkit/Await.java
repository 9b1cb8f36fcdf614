package dev.curvewatch.testkit;

import java.time.Duration;
import java.util.function.Predicate;
import java.util.function.Supplier;

/**
 * Waits in a test until something has happened, up to a deadline, and fails with what it waited
 * for and the last state it saw. The one place where tests poll: a test never sleeps to let an
 * event happen, it names the event and waits for it.
 *
 * <pre>{@code
 * Await.until(() -> worker.ownedPartitions() == 4, Duration.ofSeconds(60), "the worker owns all 4 partitions",
 *         worker::ownedPartitions);
 * Map<String, FactorCheckpoint> got = Await.until(() -> readLatest(), m -> m.size() == 3,
 *         Duration.ofSeconds(90), "checkpoints of 3 layers");
 * }</pre>
 *
 * <p>The probe is asked at once, then after 10 ms, doubling up to every 250 ms, so a fast event is
 * seen quickly and a slow one does not keep a core busy. An exception from the probe ends the
 * wait at once (an {@link AssertionError} naming the wait, the exception as its cause): a probe
 * that may fail while the system is settling (a broker restarting) catches that itself and
 * returns it as its state.
 */
public final class Await {
    static final long FIRST_PAUSE_NANOS = 10_000_000L;
    static final long MAX_PAUSE_NANOS = 250_000_000L;

    /** A probe of the state waited on; may throw checked exceptions (I/O, Kafka). */
    @FunctionalInterface
    public interface Probe<T> {
        T get() throws Exception;
    }

    /** A condition; may throw checked exceptions. */
    @FunctionalInterface
    public interface Condition {
        boolean holds() throws Exception;
    }

    private Await() {
    }

    /**
     * Asks {@code probe} until its value satisfies {@code done}, and returns that value.
     *
     * @throws AssertionError after {@code timeout}, with {@code what} and the last value seen
     */
    public static <T> T until(Probe<T> probe, Predicate<? super T> done, Duration timeout, String what) {
        long start = System.nanoTime();
        long deadline = start + timeout.toNanos();
        long pause = FIRST_PAUSE_NANOS;
        int probes = 0;
        T last;
        while (true) {
            last = ask(probe, what, start);
            probes++;
            if (done.test(last)) {
                return last;
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new AssertionError("timed out after " + seconds(System.nanoTime() - start) + " (limit "
                        + seconds(timeout.toNanos()) + ", " + probes + " probes) waiting for " + what
                        + "; last observed: " + last);
            }
            pauseFor(Math.min(pause, left), what);
            pause = Math.min(2 * pause, MAX_PAUSE_NANOS);
        }
    }

    /**
     * Waits until {@code condition} holds; on timeout the message shows {@code state}, read once
     * more at that moment (e.g. the counts the condition compares).
     */
    public static void until(Condition condition, Duration timeout, String what, Supplier<?> state) {
        until(() -> condition.holds() ? Boolean.TRUE : new Unmet(state), Unmet::met, timeout, what);
    }

    /** Waits until {@code condition} holds; the message on timeout can only say it did not. */
    public static void until(Condition condition, Duration timeout, String what) {
        until(condition, timeout, what, () -> "the condition was false");
    }

    /** The last observed state of an unmet condition, read only when the message is written. */
    private record Unmet(Supplier<?> state) {
        static boolean met(Object o) {
            return o == Boolean.TRUE;
        }

        @Override
        public String toString() {
            return String.valueOf(state.get());
        }
    }

    private static <T> T ask(Probe<T> probe, String what, long start) {
        try {
            return probe.get();
        } catch (Error e) {
            throw e; // an assertion inside the probe keeps its own message
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while waiting for " + what, e);
        } catch (Exception e) {
            throw new AssertionError("the probe failed after " + seconds(System.nanoTime() - start) + " waiting for "
                    + what + ": " + e, e);
        }
    }

    private static void pauseFor(long nanos, String what) {
        try {
            Thread.sleep(nanos / 1_000_000, (int) (nanos % 1_000_000));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while waiting for " + what, e);
        }
    }

    private static String seconds(long nanos) {
        return String.format(java.util.Locale.ROOT, "%.1f s", nanos / 1e9);
    }
}
