package dev.curvewatch.trainer;

import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

/**
 * Reads a topic from the moment it is opened: assign mode over every partition (no consumer
 * group, nothing committed), positions fixed at the end on open, so records published before the
 * run started are never answered and records published after it are never missed.
 * {@link #poll()} never waits. Not thread-safe: the training thread owns it.
 */
final class TopicTail implements AutoCloseable {
    private final KafkaConsumer<String, byte[]> consumer;
    private final String topic;

    private TopicTail(KafkaConsumer<String, byte[]> consumer, String topic) {
        this.consumer = consumer;
        this.topic = topic;
    }

    /**
     * Opens the tail (blocking up to {@code timeout} for metadata and end offsets).
     *
     * @throws IllegalStateException when the topic does not exist or the broker does not answer
     */
    static TopicTail open(String bootstrap, String topic, Duration timeout) {
        Properties p = KafkaClientSettings.forBootstrap(bootstrap);
        p.remove(ConsumerConfig.GROUP_ID_CONFIG);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "latest");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, String.valueOf(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, String.valueOf(2 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.putIfAbsent(ConsumerConfig.CLIENT_ID_CONFIG, "curvewatch-trainer-" + topic);
        KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
        try {
            List<PartitionInfo> infos = consumer.partitionsFor(topic, timeout);
            if (infos == null || infos.isEmpty()) {
                throw new IllegalStateException("topic " + topic + " does not exist");
            }
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : infos) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToEnd(partitions);
            // seekToEnd is lazy: resolve the end now, so "the end" means when training started
            for (TopicPartition tp : partitions) {
                consumer.position(tp, timeout);
            }
            return new TopicTail(consumer, topic);
        } catch (RuntimeException e) {
            consumer.close(Duration.ZERO);
            throw e instanceof IllegalStateException ? e
                    : new IllegalStateException("cannot read " + topic + ": " + e.getMessage(), e);
        }
    }

    String topic() {
        return topic;
    }

    /** Whatever has arrived since the last call; never blocks. */
    List<ConsumerRecord<String, byte[]>> poll() {
        List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
        consumer.poll(Duration.ZERO).forEach(out::add);
        return out;
    }

    @Override
    public void close() {
        consumer.close(Duration.ofSeconds(5));
    }
}
