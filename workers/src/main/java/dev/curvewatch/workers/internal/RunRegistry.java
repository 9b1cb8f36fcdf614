package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.InvalidRecordException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The worker's view of the compacted runs topic: every partition assigned (no group), read from
 * the beginning, tombstones forget a run. Only the poll thread calls it.
 */
public final class RunRegistry implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(RunRegistry.class);

    private final KafkaConsumer<byte[], byte[]> consumer;
    private final AvroDeserializer<RunInfo> decoder = new AvroDeserializer<>(RunInfo.class);
    private final Map<String, RunInfo> runs = new ConcurrentHashMap<>();
    private final List<TopicPartition> parts = new ArrayList<>();
    private long invalid;
    private long lastCatchUpNanos;

    public RunRegistry(Properties client, String topic, Duration timeout) {
        Properties p = new Properties();
        p.putAll(client);
        p.remove(ConsumerConfig.GROUP_ID_CONFIG);
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.setProperty(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        consumer = new KafkaConsumer<>(p);
        for (PartitionInfo pi : consumer.partitionsFor(topic, timeout)) {
            parts.add(new TopicPartition(topic, pi.partition()));
        }
        consumer.assign(parts);
        consumer.seekToBeginning(parts);
    }

    /** Takes whatever arrived, without waiting. */
    public void pollNow() {
        apply(consumer.poll(Duration.ZERO));
    }

    /** Reads up to the current end of the topic (at most once per {@code minIntervalMs}). */
    public void catchUp(Duration timeout, long minIntervalMs) {
        long now = System.nanoTime();
        if (lastCatchUpNanos != 0 && now - lastCatchUpNanos < minIntervalMs * 1_000_000L) {
            pollNow();
            return;
        }
        Map<TopicPartition, Long> end = consumer.endOffsets(parts, timeout);
        long deadline = now + timeout.toNanos();
        for (TopicPartition tp : parts) {
            while (consumer.position(tp, timeout) < end.get(tp) && System.nanoTime() < deadline) {
                apply(consumer.poll(Duration.ofMillis(100)));
            }
        }
        lastCatchUpNanos = System.nanoTime();
    }

    private void apply(Iterable<ConsumerRecord<byte[], byte[]>> records) {
        for (ConsumerRecord<byte[], byte[]> r : records) {
            String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
            if (r.value() == null) {
                if (key != null) {
                    runs.remove(key);
                }
                continue;
            }
            try {
                RunInfo info = decoder.decode(r.value());
                runs.put(info.getRunId(), info);
            } catch (InvalidRecordException e) {
                invalid++;
                log.warn("ignoring unreadable RunInfo at {}-{}@{}: {}", r.topic(), r.partition(), r.offset(), e.getMessage());
            }
        }
    }

    public RunInfo get(String runId) {
        return runs.get(runId);
    }

    public int size() {
        return runs.size();
    }

    public long invalidRecords() {
        return invalid;
    }

    @Override
    public void close() {
        consumer.close(Duration.ofSeconds(5));
    }
}
