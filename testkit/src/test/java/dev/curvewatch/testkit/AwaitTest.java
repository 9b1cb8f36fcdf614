package dev.curvewatch.testkit;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AwaitTest {
    @Test
    void returnsTheFirstValueThatSatisfies() {
        AtomicInteger n = new AtomicInteger();
        int got = Await.until(n::incrementAndGet, v -> v >= 3, Duration.ofSeconds(30), "three probes");
        assertEquals(3, got);
        assertEquals(3, n.get(), "asked no more than needed");
    }

    @Test
    void conditionThatHoldsAtOnceIsAskedOnce() {
        AtomicInteger n = new AtomicInteger();
        Await.until(() -> n.incrementAndGet() > 0, Duration.ZERO, "anything");
        assertEquals(1, n.get());
    }

    @Test
    void timeoutNamesTheWaitAndTheLastObservedValue() {
        AtomicInteger n = new AtomicInteger();
        long t0 = System.nanoTime();
        AssertionError e = assertThrows(AssertionError.class,
                () -> Await.until(() -> "seen " + n.incrementAndGet(), v -> false, Duration.ofMillis(200), "a value never seen"));
        assertTrue(System.nanoTime() - t0 >= Duration.ofMillis(200).toNanos(), "waited the whole timeout");
        assertTrue(e.getMessage().contains("waiting for a value never seen"), e.getMessage());
        assertTrue(e.getMessage().contains("last observed: seen " + n.get()), e.getMessage());
        assertTrue(n.get() >= 2, "asked again before giving up: " + n.get());
    }

    @Test
    void conditionTimeoutShowsTheStateReadAtTheEnd() {
        AtomicInteger owned = new AtomicInteger(1);
        AssertionError e = assertThrows(AssertionError.class, () -> Await.until(() -> owned.incrementAndGet() > 1_000_000,
                Duration.ofMillis(50), "all partitions owned", () -> "owned " + owned.get()));
        assertTrue(e.getMessage().contains("waiting for all partitions owned; last observed: owned " + owned.get()), e.getMessage());
    }

    @Test
    void probeExceptionEndsTheWaitWithItsCause() {
        IOException io = new IOException("connection refused");
        AssertionError e = assertThrows(AssertionError.class, () -> Await.until(() -> {
            throw io;
        }, Duration.ofSeconds(30), "the health endpoint"));
        assertTrue(e.getMessage().contains("the health endpoint"), e.getMessage());
        assertEquals(io, e.getCause());
        IllegalStateException ise = new IllegalStateException("closed");
        AssertionError e2 = assertThrows(AssertionError.class, () -> Await.until(() -> {
            throw ise;
        }, Duration.ofSeconds(30), "a closed thing"));
        assertEquals(ise, e2.getCause());
    }

    @Test
    void assertionInsideTheProbeKeepsItsMessage() {
        AssertionError e = assertThrows(AssertionError.class, () -> Await.until(() -> {
            throw new AssertionError("dead letter with the wrong reason");
        }, Duration.ofSeconds(30), "a dead letter"));
        assertEquals("dead letter with the wrong reason", e.getMessage());
    }

    @Test
    void interruptEndsTheWaitAndKeepsTheFlag() {
        Thread.currentThread().interrupt();
        try {
            AssertionError e = assertThrows(AssertionError.class, () -> Await.until(() -> false, Duration.ofSeconds(30), "never"));
            assertInstanceOf(InterruptedException.class, e.getCause());
            assertTrue(Thread.currentThread().isInterrupted());
        } finally {
            Thread.interrupted();
        }
    }
}
