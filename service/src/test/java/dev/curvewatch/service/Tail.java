package dev.curvewatch.service;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.function.Function;
import java.util.function.Predicate;

/**
 * A topic read from its beginning by a test: every record seen is kept, and {@link #await} blocks
 * in the consumer's poll (not in a sleep) until a record matches or the deadline passes. One
 * thread only.
 */
final class Tail implements AutoCloseable {
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final String topic;
    private final List<ConsumerRecord<byte[], byte[]>> seen = new ArrayList<>();

    Tail(String bootstrap, String topic) {
        Properties p = new Properties();
        p.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.setProperty(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(17 << 20));
        p.setProperty(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(34 << 20));
        this.consumer = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        this.topic = topic;
        List<TopicPartition> parts = new ArrayList<>();
        consumer.partitionsFor(topic, Duration.ofSeconds(30)).forEach(pi -> parts.add(new TopicPartition(topic, pi.partition())));
        consumer.assign(parts);
        consumer.seekToBeginning(parts);
    }

    /** The first record (seen before or arriving before the deadline) that {@code match} maps to non-null. */
    <T> T await(String what, Duration timeout, Function<ConsumerRecord<byte[], byte[]>, T> match) {
        int checked = 0;
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            for (; checked < seen.size(); checked++) {
                T t = match.apply(seen.get(checked));
                if (t != null) {
                    return t;
                }
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new AssertionError("no record on " + topic + " matched '" + what + "' within " + timeout + " (" + seen.size() + " seen)");
            }
            consumer.poll(Duration.ofNanos(Math.min(left, 500_000_000L))).forEach(seen::add);
        }
    }

    /** Reads whatever arrived up to now (one short poll) and returns every record seen. */
    List<ConsumerRecord<byte[], byte[]>> drain() {
        consumer.poll(Duration.ofMillis(200)).forEach(seen::add);
        return List.copyOf(seen);
    }

    long count(Predicate<ConsumerRecord<byte[], byte[]>> p) {
        return seen.stream().filter(p).count();
    }

    @Override
    public void close() {
        consumer.close(Duration.ofSeconds(5));
    }
}
