package dev.curvewatch.it.bench;

import dev.curvewatch.avro.Signal;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

/**
 * The service's signals of one layer, by factor version: the refresh ({@code refresh_seconds}
 * with its stage attributes), basis drift and warm-start flags, the calibration
 * ({@code calibrated_rho}) and failures. Polled by the bench's main thread.
 */
final class RefreshTimeline implements AutoCloseable {
    /** Everything the service said about one factor version. */
    static final class Refresh {
        final long version;
        Signal refresh;
        Signal calibrated;
        Signal failed;
        Signal skipped;
        Double driftG;
        Double driftA;

        Refresh(long version) {
            this.version = version;
        }

        /** When the service read the manifest: the signal's timestamp less its latency. */
        double readyMs() {
            return refresh.getTimestampMs() - 1000 * refresh.getAttributes().getOrDefault("latency_seconds", 0.0);
        }

        double attr(String name) {
            return refresh.getAttributes().getOrDefault(name, Double.NaN);
        }
    }

    private final String runLayer;
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final AvroDeserializer<Signal> decoder = new AvroDeserializer<>(Signal.class);
    private final Map<Long, Refresh> byVersion = new TreeMap<>();
    private int timeouts;

    RefreshTimeline(String bootstrap, CurvewatchTopics topics, String runId, String layer) {
        this.runLayer = CurvewatchTopics.runLayerKey(runId, layer);
        Properties c = new Properties();
        c.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        consumer = new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        List<TopicPartition> parts = new ArrayList<>();
        consumer.partitionsFor(topics.signals()).forEach(pi -> parts.add(new TopicPartition(pi.topic(), pi.partition())));
        consumer.assign(parts);
        consumer.seekToBeginning(parts);
    }

    void poll(Duration timeout) {
        for (ConsumerRecord<byte[], byte[]> r : consumer.poll(timeout)) {
            Signal s = decoder.decode(r.value());
            if (!runLayer.equals(s.getRunId() + "/" + s.getLayer())) {
                continue;
            }
            Refresh f = byVersion.computeIfAbsent(s.getFactorVersion(), Refresh::new);
            switch (s.getName()) {
                case "refresh_seconds" -> f.refresh = s;
                case "calibrated_rho" -> f.calibrated = s;
                case "refresh_failed" -> f.failed = s;
                case "eigh_skipped" -> f.skipped = s;
                case "basis_drift_g" -> f.driftG = s.getValue();
                case "basis_drift_a" -> f.driftA = s.getValue();
                case "calibration_timeouts" -> timeouts++;
                default -> {
                }
            }
        }
    }

    List<Refresh> refreshes() {
        return new ArrayList<>(byVersion.values());
    }

    long calibratedCount() {
        return byVersion.values().stream().filter(r -> r.calibrated != null && r.refresh != null).count();
    }

    long failedCount() {
        return byVersion.values().stream().filter(r -> r.failed != null).count();
    }

    int timeouts() {
        return timeouts;
    }

    @Override
    public void close() {
        consumer.close();
    }
}
