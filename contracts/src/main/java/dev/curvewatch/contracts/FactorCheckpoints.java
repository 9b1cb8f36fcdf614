package dev.curvewatch.contracts;

import dev.curvewatch.schemas.CurvewatchTopics;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.Predicate;

/**
 * Reads the newest committed checkpoint of each layer from the compacted factors topic
 * (read_committed, up to the last stable offset): the manifest, then the chunks of exactly its
 * version, checksum verified. Used by workers to restore and by anyone who needs "factors ready".
 */
public final class FactorCheckpoints {
    private FactorCheckpoints() {
    }

    /** Consumer settings for scanning the factors topic (no group, read_committed, 16 MB records). */
    public static Properties consumerProperties(Properties client) {
        Properties p = new Properties();
        p.putAll(client);
        p.remove(ConsumerConfig.GROUP_ID_CONFIG);
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES + (1 << 20)));
        p.setProperty(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(2 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "16");
        p.setProperty(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.setProperty(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    /** Every layer's newest checkpoint on the whole factors topic, keyed run/layer. */
    public static Map<String, FactorCheckpoint> readLatest(Properties client, CurvewatchTopics topics, Duration timeout) {
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProperties(client))) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo pi : consumer.partitionsFor(topics.factors(), timeout)) {
                parts.add(new TopicPartition(pi.topic(), pi.partition()));
            }
            return scan(consumer, parts, key -> true, timeout);
        }
    }

    /**
     * Scans the given partitions from the beginning to their end offsets with an assign-mode
     * consumer and assembles the newest checkpoint of each run/layer accepted by {@code wanted}:
     * the newest below the end offsets read at the start (read_committed: whole transactions only),
     * so a worker checkpointing meanwhile does not leave a half-read one. Keeps only the newest
     * chunk per key while scanning, so memory is ~one copy of the wanted layers' factors.
     */
    public static Map<String, FactorCheckpoint> scan(Consumer<byte[], byte[]> consumer, Collection<TopicPartition> parts,
                                                     Predicate<String> wanted, Duration timeout) {
        if (parts.isEmpty()) {
            return Map.of();
        }
        FactorCheckpointReader reader = new FactorCheckpointReader(wanted);
        consumer.assign(parts);
        consumer.seekToBeginning(parts);
        Map<TopicPartition, Long> end = consumer.endOffsets(parts, timeout);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean done = true;
            for (TopicPartition tp : parts) {
                if (consumer.position(tp, timeout) < end.get(tp)) {
                    done = false;
                    break;
                }
            }
            if (done) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new org.apache.kafka.common.errors.TimeoutException("factors topic not read to its end within " + timeout);
            }
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                // a poll runs past the end offsets into checkpoints committed since, and may stop inside one
                // (chunks of v+1 read, manifest v+1 not): only what lies below the end offsets is whole
                if (r.offset() < end.get(new TopicPartition(r.topic(), r.partition()))) {
                    reader.accept(r.key(), r.value());
                }
            }
        }
        consumer.unsubscribe();
        Map<String, FactorCheckpoint> out = new HashMap<>();
        for (String runLayer : reader.layers()) {
            out.put(runLayer, reader.assemble(runLayer));
        }
        return out;
    }
}
