package dev.curvewatch.workers.internal;

import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.IntToLongFunction;

/**
 * When each captures partition is checkpointed: the worker commits a partition's offsets only
 * together with the factors of every layer that changed in it, so the schedule is per partition.
 *
 * <p>A partition is due once it advanced (a capture, probe or dead letter consumed) and
 * {@code checkpoint.interval.ms} has passed since its last checkpoint, and then only when the
 * capture bytes accumulated into its layers since reach {@code checkpoint.capture.ratio} times
 * the factor bytes it would write (d_in² + d_out² elements per changed layer), or
 * {@code checkpoint.max.interval.ms} has passed, or it has no changed layer (offsets alone cost
 * nothing), or nothing arrived for an interval (the stream paused: at a run's end or between
 * its bursts the last factors are published at once, and written once). While captures keep
 * coming a checkpoint thus writes at most 1/ratio bytes per capture byte: a layer's interval
 * grows with its d² / (d_in + d_out), e.g. one per 18,200 tokens for 11008 x 4096 at ratio 1,
 * instead of its d² bytes every 10 s. A partition is due at once after
 * {@code checkpoint.tokens} tokens. Partitions with dead letters in the open transaction are
 * due after the interval and go into every commit, so no dead letter is committed without its
 * offset (a replay would send it again). Ratio 0 restores the old rule: every partition at every
 * interval.
 */
final class CheckpointSchedule {
    private static final class Progress {
        long lastNanos;
        long lastRecordNanos;
        long captureBytes;
        long tokens;
        boolean advanced;
        boolean deadLetters;

        Progress(long now) {
            lastNanos = now;
        }
    }

    private final long intervalNanos;
    private final long maxIntervalNanos;
    private final double captureRatio;
    private final long tokens;
    private final Map<Integer, Progress> partitions = new HashMap<>();

    CheckpointSchedule(long intervalMs, long maxIntervalMs, double captureRatio, long tokens) {
        this.intervalNanos = intervalMs * 1_000_000L;
        this.maxIntervalNanos = maxIntervalMs * 1_000_000L;
        this.captureRatio = captureRatio;
        this.tokens = tokens;
    }

    private Progress of(int partition, long now) {
        return partitions.computeIfAbsent(partition, p -> new Progress(now));
    }

    /** A record of the partition was consumed (accepted, probe or dead letter). */
    void advanced(int partition, long now) {
        Progress p = of(partition, now);
        p.advanced = true;
        p.lastRecordNanos = now;
    }

    /** A capture of {@code bytes} with {@code tokenCount} tokens went into a layer of the partition. */
    void accumulated(int partition, long bytes, long tokenCount, long now) {
        advanced(partition, now);
        Progress p = of(partition, now);
        p.captureBytes += bytes;
        p.tokens += tokenCount;
    }

    /** A dead letter of the partition was sent in the open transaction. */
    void deadLetter(int partition, long now) {
        advanced(partition, now);
        of(partition, now).deadLetters = true;
    }

    /**
     * The partitions to checkpoint now (empty: none), with every partition holding dead letters
     * of the open transaction whenever any is due.
     *
     * @param factorBytes the bytes a checkpoint of the partition would write (its changed layers)
     */
    Set<Integer> due(long now, IntToLongFunction factorBytes) {
        Set<Integer> out = new TreeSet<>();
        for (Map.Entry<Integer, Progress> e : partitions.entrySet()) {
            Progress p = e.getValue();
            if (!p.advanced) {
                continue;
            }
            long elapsed = now - p.lastNanos;
            boolean due = p.tokens >= tokens;
            if (!due && elapsed >= intervalNanos) {
                long bytes = factorBytes.applyAsLong(e.getKey());
                due = p.deadLetters || bytes == 0 || elapsed >= maxIntervalNanos || now - p.lastRecordNanos >= intervalNanos
                        || p.captureBytes >= captureRatio * bytes;
            }
            if (due) {
                out.add(e.getKey());
            }
        }
        if (!out.isEmpty()) {
            partitions.forEach((partition, p) -> {
                if (p.deadLetters) {
                    out.add(partition);
                }
            });
        }
        return out;
    }

    /** Every partition that advanced (a final checkpoint, or one before giving partitions up). */
    Set<Integer> advanced() {
        Set<Integer> out = new TreeSet<>();
        partitions.forEach((partition, p) -> {
            if (p.advanced) {
                out.add(partition);
            }
        });
        return out;
    }

    /** These partitions were committed now. */
    void committed(Set<Integer> done, long now) {
        for (int partition : done) {
            Progress p = of(partition, now);
            p.lastNanos = now;
            p.captureBytes = 0;
            p.tokens = 0;
            p.advanced = false;
            p.deadLetters = false;
        }
    }

    /** The partition's in-memory progress is gone (revoked, lost or rolled back to its committed state). */
    void forget(int partition) {
        partitions.remove(partition);
    }

    /** Whether any partition advanced since its last checkpoint. */
    boolean anyAdvanced() {
        return partitions.values().stream().anyMatch(p -> p.advanced);
    }
}
