package dev.curvewatch.service.internal;

import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.apache.kafka.clients.consumer.ConsumerRecord;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Weight records of runs not registered yet, held back for {@code unknown.run.grace.ms} in case
 * the registration follows (a trainer may publish its first weights before its RunInfo is read).
 * Bounded twice: at most {@code maxPerRun} records per run id (the oldest goes first) and at most
 * {@code maxBytes} of record keys and values over all run ids together (a record that would
 * exceed it is refused at once), so no number of unknown run ids can make the service hold more.
 * Everything dropped comes back as a {@link Refused} for the caller to dead-letter. Not
 * thread-safe: the ingest thread's.
 */
public final class ParkedWeights {
    /** A held record and when it first arrived. */
    public record Parked(ConsumerRecord<byte[], byte[]> record, long sinceMs) {
    }

    /** A record given up, with the reason. */
    public record Refused(ConsumerRecord<byte[], byte[]> record, InvalidRecordException why) {
    }

    private final int maxPerRun;
    private final long maxBytes;
    private final Map<String, ArrayDeque<Parked>> byRun = new LinkedHashMap<>();
    private volatile long bytes; // read by the metrics gauge

    public ParkedWeights(int maxPerRun, long maxBytes) {
        this.maxPerRun = maxPerRun;
        this.maxBytes = maxBytes;
    }

    static long size(ConsumerRecord<byte[], byte[]> r) {
        return (r.key() == null ? 0 : r.key().length) + (r.value() == null ? 0 : r.value().length);
    }

    /** Holds a record of an unregistered run; returns what had to be given up for it (maybe itself). */
    public List<Refused> park(String runId, ConsumerRecord<byte[], byte[]> r, long sinceMs) {
        List<Refused> out = new ArrayList<>();
        long size = size(r);
        if (bytes + size > maxBytes) {
            out.add(new Refused(r, new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + runId + "' is not registered and the "
                    + bytes + " bytes of weights already waiting for unregistered runs leave no room for " + size
                    + " more (weights.parked.max.bytes=" + maxBytes + ")")));
            return out;
        }
        ArrayDeque<Parked> q = byRun.computeIfAbsent(runId, k -> new ArrayDeque<>());
        q.addLast(new Parked(r, sinceMs));
        bytes += size;
        while (q.size() > maxPerRun) {
            Parked old = q.removeFirst();
            bytes -= size(old.record());
            out.add(new Refused(old.record(), new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + runId
                    + "' is not registered and more than " + maxPerRun + " of its weight records wait")));
        }
        return out;
    }

    /** The run was registered: its records, oldest first, to process now. */
    public List<Parked> release(String runId) {
        ArrayDeque<Parked> q = byRun.remove(runId);
        if (q == null) {
            return List.of();
        }
        q.forEach(p -> bytes -= size(p.record()));
        return new ArrayList<>(q);
    }

    /** Gives up records that waited longer than {@code graceMs}. */
    public List<Refused> expire(long nowMs, long graceMs) {
        List<Refused> out = new ArrayList<>();
        for (var it = byRun.entrySet().iterator(); it.hasNext(); ) {
            var e = it.next();
            ArrayDeque<Parked> q = e.getValue();
            while (!q.isEmpty() && nowMs - q.peekFirst().sinceMs() > graceMs) {
                Parked p = q.removeFirst();
                bytes -= size(p.record());
                out.add(new Refused(p.record(), new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + e.getKey()
                        + "' was not registered within " + graceMs + " ms")));
            }
            if (q.isEmpty()) {
                it.remove();
            }
        }
        return out;
    }

    /** Key and value bytes held now. */
    public long bytes() {
        return bytes;
    }

    /** Run ids with records held. */
    public int runs() {
        return byRun.size();
    }
}
