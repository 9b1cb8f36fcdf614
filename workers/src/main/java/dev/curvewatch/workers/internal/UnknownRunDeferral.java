package dev.curvewatch.workers.internal;

import org.apache.kafka.common.TopicPartition;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Policy for a capture whose run is not (yet) registered: the trainer may publish its RunInfo a
 * moment after the first captures, so the capture's partition is paused at it and retried (after
 * the caller re-reads the runs topic) every {@link #RETRY_MS} ms at most, until
 * {@code unknown.run.grace.ms} has passed since the capture was first seen; then it is given up
 * (the caller dead-letters it as UNKNOWN_RUN). Other partitions keep flowing.
 *
 * <p>Pure bookkeeping on the time it is given: the caller pauses, seeks and resumes the consumer.
 */
public final class UnknownRunDeferral {
    /** Longest wait between two retries of a deferred capture. */
    static final long RETRY_MS = 250;

    /** What to do with a capture whose run is unknown. */
    public enum Outcome {
        /** first seen now: pause its partition at it (counted once per capture) */
        PAUSED_FIRST_TIME,
        /** seen before, grace not over: pause again */
        PAUSED_AGAIN,
        /** the grace period is over: dead-letter it */
        GRACE_OVER
    }

    private final long graceMs;
    /** offset and first time a capture of an unknown run was seen, per partition */
    private final Map<TopicPartition, long[]> firstSeen = new HashMap<>();
    /** paused partitions: the time of their next retry */
    private final Map<TopicPartition, Long> retryAt = new HashMap<>();

    public UnknownRunDeferral(long graceMs) {
        this.graceMs = graceMs;
    }

    /** The capture at {@code offset} of {@code tp} has a run still unknown after re-reading the runs topic. */
    public Outcome unknownRun(TopicPartition tp, long offset, long nowMs) {
        long[] seen = firstSeen.get(tp);
        boolean first = seen == null || seen[0] != offset;
        if (first) {
            seen = new long[]{offset, nowMs};
            firstSeen.put(tp, seen);
        }
        if (nowMs - seen[1] >= graceMs) {
            firstSeen.remove(tp);
            return Outcome.GRACE_OVER;
        }
        retryAt.put(tp, Math.min(seen[1] + graceMs, nowMs + RETRY_MS));
        return first ? Outcome.PAUSED_FIRST_TIME : Outcome.PAUSED_AGAIN;
    }

    /** A capture of {@code tp} was accepted: any capture it waited on is resolved. */
    public void accepted(TopicPartition tp) {
        firstSeen.remove(tp);
    }

    /** Whether {@code tp} is paused on a capture of an unknown run (the rest of its batch waits). */
    public boolean isPaused(TopicPartition tp) {
        return retryAt.containsKey(tp);
    }

    /** Paused partitions whose retry time has come, no longer counted as paused: the caller resumes them. */
    public List<TopicPartition> dueForRetry(long nowMs) {
        List<TopicPartition> ready = new ArrayList<>();
        for (Map.Entry<TopicPartition, Long> e : retryAt.entrySet()) {
            if (e.getValue() <= nowMs) {
                ready.add(e.getKey());
            }
        }
        ready.forEach(retryAt::remove);
        return ready;
    }

    /** Forgets {@code tp} (revoked, lost or reset); true if it was paused, so the caller resumes it. */
    public boolean forget(TopicPartition tp) {
        firstSeen.remove(tp);
        return retryAt.remove(tp) != null;
    }

    /** Partitions paused now. */
    public int paused() {
        return retryAt.size();
    }
}
