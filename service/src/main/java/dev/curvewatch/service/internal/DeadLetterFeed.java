package dev.curvewatch.service.internal;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.service.ServiceConfig;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

/**
 * Reads topic dead-letters (every component's: workers, the streams app, this service) from its
 * beginning, once the start-up catch-up has registered the runs, and counts each dead letter
 * against the run and layer its original key names ({@code run/layer...}, or {@code run}), so
 * the run's page and {@code /api/runs/{run}} say why a layer has no factors (issue 11: a layer
 * whose every capture was dead-lettered read "waiting for factors"). Only runs and layers the
 * service holds are counted (bounded: {@link DeadLetterStats}); the rest are counted as
 * unattributed. Its own thread and consumer, so a long dead-letter topic never delays the
 * catch-up.
 */
public final class DeadLetterFeed extends ConsumerLoop {
    private static final Logger LOG = LoggerFactory.getLogger(DeadLetterFeed.class);

    /** The run and (when the key names one) layer a dead letter's original key belongs to. */
    record Owner(String runId, String layer) {
    }

    private final ServiceConfig config;
    private final CurvewatchTopics topics;
    private final Registry registry;
    private final ServiceMetrics metrics;
    private final AvroDeserializer<DeadLetter> decoder = new AvroDeserializer<>(DeadLetter.class);

    public DeadLetterFeed(ServiceConfig config, Registry registry, ServiceMetrics metrics, String component) {
        this(config, registry, metrics, consumer(config, component));
    }

    /** Over any consumer (tests use Kafka's MockConsumer). */
    DeadLetterFeed(ServiceConfig config, Registry registry, ServiceMetrics metrics, Consumer<byte[], byte[]> consumer) {
        super("dead-letter", consumer);
        this.config = config;
        this.topics = config.topics();
        this.registry = registry;
        this.metrics = metrics;
    }

    private static KafkaConsumer<byte[], byte[]> consumer(ServiceConfig config, String component) {
        Properties p = new Properties();
        p.putAll(config.kafkaProperties());
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "64");
        p.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, component + "-dead-letters");
        p.remove(ConsumerConfig.GROUP_ID_CONFIG);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    @Override
    protected void loop() throws InterruptedException {
        while (!stopping() && !registry.awaitCaughtUp(Duration.ofMillis(200))) {
            polled();
        }
        List<TopicPartition> parts = new ArrayList<>();
        List<PartitionInfo> infos = consumer.partitionsFor(topics.deadLetters(), Duration.ofSeconds(60));
        if (infos == null || infos.isEmpty()) {
            throw new IllegalStateException("topic " + topics.deadLetters() + " does not exist");
        }
        infos.forEach(pi -> parts.add(new TopicPartition(pi.topic(), pi.partition())));
        consumer.assign(parts);
        consumer.seekToBeginning(parts);
        while (!stopping()) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(config.pollTimeoutMs()))) {
                accept(r);
            }
            polled();
        }
    }

    /** Counts one dead-letters record; an undecodable one is only logged (nothing of ours to attribute it to). */
    void accept(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        DeadLetter dl;
        try {
            dl = decoder.decode(r.value());
        } catch (InvalidRecordException | org.apache.avro.AvroRuntimeException e) {
            LOG.warn("undecodable dead letter at {} p{}@{}: {}", r.topic(), r.partition(), r.offset(), e.getMessage());
            metrics.inc("curvewatch_service_dead_letters_read_total", "undecodable");
            return;
        }
        Owner owner = owner(originalKey(dl, r));
        String topic = dl.getTopic().startsWith(topics.prefix()) ? dl.getTopic().substring(topics.prefix().length()) : dl.getTopic();
        boolean counted = owner != null && registry.deadLetter(owner.runId(), owner.layer(), topic, dl.getReasonCode(), dl.getReason(),
                dl.getComponent(), dl.getFailedMs());
        metrics.inc("curvewatch_service_dead_letters_read_total", counted ? "attributed" : "unattributed");
    }

    private static String originalKey(DeadLetter dl, ConsumerRecord<byte[], byte[]> r) {
        ByteBuffer k = dl.getOriginalKey();
        if (k != null) {
            ByteBuffer b = k.duplicate();
            byte[] bytes = new byte[Math.min(b.remaining(), 1024)];
            b.get(bytes);
            return new String(bytes, StandardCharsets.UTF_8);
        }
        return r.key() == null ? null : new String(r.key(), 0, Math.min(r.key().length, 1024), StandardCharsets.UTF_8);
    }

    /**
     * The run and layer of a record key: {@code run/layer[/...]} (captures, weights, factors,
     * signals) or {@code run} (probe results, edit requests); null when the key names no run
     * (alert fingerprints say nothing the registry knows, and are simply not found).
     */
    static Owner owner(String key) {
        if (key == null || key.isEmpty()) {
            return null;
        }
        String[] parts = key.split("/", 3);
        try {
            ContractChecks.requireId(parts[0], "run_id");
            if (parts.length == 1) {
                return new Owner(parts[0], null);
            }
            ContractChecks.requireId(parts[1], "layer");
            return new Owner(parts[0], parts[1]);
        } catch (InvalidRecordException e) {
            return null;
        }
    }
}
