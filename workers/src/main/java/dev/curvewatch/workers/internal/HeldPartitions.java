package dev.curvewatch.workers.internal;

import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;

/**
 * The captures partitions whose state a worker holds in memory, and per partition the next offset
 * to commit: one past the last record whose effect is in memory. Written by the poll thread; the
 * published count ({@link #publish}) and the lag are read by other threads (metrics, health).
 */
final class HeldPartitions {
    private final Set<TopicPartition> held = new HashSet<>();
    private final Map<TopicPartition, Long> positions = new HashMap<>();
    private volatile int published;
    private volatile double lag;

    boolean contains(TopicPartition tp) {
        return held.contains(tp);
    }

    /** The partitions held, a read-only view. */
    Set<TopicPartition> all() {
        return Collections.unmodifiableSet(held);
    }

    void add(Collection<TopicPartition> parts) {
        held.addAll(parts);
    }

    /** No longer held: forgets their positions too. */
    void remove(Collection<TopicPartition> parts) {
        held.removeAll(parts);
        positions.keySet().removeAll(parts);
    }

    /** The record at {@code offset} has its effect in memory (accumulated, dead letter or probe). */
    void advanced(TopicPartition tp, long offset) {
        positions.put(tp, offset + 1);
    }

    /** The offsets to commit for the held partitions among these captures partitions. */
    Map<TopicPartition, OffsetAndMetadata> offsets(Set<Integer> partitions) {
        Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
        positions.forEach((tp, pos) -> {
            if (held.contains(tp) && partitions.contains(tp.partition())) {
                out.put(tp, new OffsetAndMetadata(pos));
            }
        });
        return out;
    }

    /** Makes the number held now the one {@link #count} reports (after a change is complete). */
    void publish() {
        published = held.size();
    }

    int count() {
        return published;
    }

    /** Sums the consumer's lag over the partitions held. */
    void measureLag(KafkaConsumer<?, ?> consumer) {
        double sum = 0;
        for (TopicPartition tp : held) {
            OptionalLong l = consumer.currentLag(tp);
            if (l.isPresent()) {
                sum += l.getAsLong();
            }
        }
        lag = sum;
    }

    double lag() {
        return lag;
    }
}
