package dev.curvewatch.service.internal;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.utils.Utils;

import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.HashSet;
import java.util.Set;

/**
 * Which runs this service instance owns (refreshes, calibrates, alerts on, edits): those whose
 * key (the run id) falls into a partition of topic edit-requests that the group
 * {@code edit.group.id} assigned to this instance's edit-request consumer. The partition of a
 * run is the Kafka producer's default for its key (murmur2), so an instance serves exactly the
 * edit requests of the runs it owns. Every other instance only follows them (history, alert state,
 * weights, the service-state records). A single instance gets every partition and owns every run.
 *
 * <p>Written on the edit-request thread (rebalance callbacks), read on every other; the
 * generation tells the ingest thread that the set changed.
 */
public final class RunOwnership implements ConsumerRebalanceListener {
    private volatile Set<Integer> owned = Set.of();
    private volatile int partitions;
    private volatile long generation;
    private final boolean all;

    private RunOwnership(boolean all) {
        this.all = all;
    }

    /** Ownership by the edit-request group's assignment; owns nothing until the first assignment. */
    public static RunOwnership byAssignment() {
        return new RunOwnership(false);
    }

    /** Owns every run (an instance without an edit-request consumer: unit tests). */
    public static RunOwnership everything() {
        return new RunOwnership(true);
    }

    /** The partition of edit-requests a run's records go to. */
    public static int partitionOf(String runId, int partitions) {
        return Utils.toPositive(Utils.murmur2(runId.getBytes(StandardCharsets.UTF_8))) % partitions;
    }

    /** The number of partitions of edit-requests (before the consumer subscribes). */
    public void partitions(int n) {
        this.partitions = n;
    }

    public boolean owns(String runId) {
        if (all) {
            return true;
        }
        int n = partitions;
        return n > 0 && owned.contains(partitionOf(runId, n));
    }

    /** Grows whenever the owned partitions change. */
    public long generation() {
        return generation;
    }

    /** The partitions of edit-requests owned now. */
    public Set<Integer> owned() {
        return owned;
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
        Set<Integer> s = new HashSet<>(owned);
        assigned.forEach(tp -> s.add(tp.partition()));
        change(s);
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
        Set<Integer> s = new HashSet<>(owned);
        revoked.forEach(tp -> s.remove(tp.partition()));
        change(s);
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> lost) {
        onPartitionsRevoked(lost);
    }

    private synchronized void change(Set<Integer> s) {
        if (!s.equals(owned)) {
            owned = Set.copyOf(s);
            generation++;
        }
    }
}
