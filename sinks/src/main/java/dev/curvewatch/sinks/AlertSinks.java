package dev.curvewatch.sinks;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.DeadLetters;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.sinks.internal.AlertmanagerSink;
import dev.curvewatch.sinks.internal.Delivery;
import dev.curvewatch.sinks.internal.Sink;
import dev.curvewatch.sinks.internal.WebhookSink;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Alerts where people already look: reads the de-duplicated {@code alerts} topic (what the
 * streams app publishes, so sinks see no repeats and no flaps) and hands each alert to every
 * configured sink, Prometheus Alertmanager ({@code alertmanager.url}) and a signed webhook
 * ({@code webhook.url}). A consumer of its own, outside the streams app and the service: a sink
 * that is slow or down delays only its own queue, never alerts on Kafka, refreshes or the guard.
 * The topic is compacted (latest state per fingerprint), so it is read from the beginning at every
 * start: what was there before only rebuilds Alertmanager's firing set (posting it again is
 * idempotent); the webhook gets what arrives afterwards. A webhook delivery that fails for good is a
 * dead letter ({@code DELIVERY_FAILED}) on the dead-letters topic.
 */
public final class AlertSinks implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(AlertSinks.class);
    private static final int DEAD_LETTER_MAX_VALUE_BYTES = 1 << 20;

    private final SinksConfig config;
    private final List<Sink> sinks = new ArrayList<>();
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final KafkaProducer<byte[], byte[]> producer;
    private final AvroDeserializer<Alert> decoder = new AvroDeserializer<>(Alert.class);
    private final AvroSerializer<DeadLetter> deadLetters = new AvroSerializer<>(DeadLetter.class);
    private final Thread thread;
    private volatile boolean stop;
    private volatile Throwable failure;
    private volatile long read;

    private AlertSinks(SinksConfig config) {
        this.config = config;
        Properties c = config.kafkaProperties();
        c.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, config.component() + "-alerts");
        c.remove(ConsumerConfig.GROUP_ID_CONFIG);
        this.consumer = new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        Properties p = config.kafkaProperties();
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.CLIENT_ID_CONFIG, config.component() + "-dead-letters");
        this.producer = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
        config.alertmanagerUrl().ifPresent(u -> sinks.add(new AlertmanagerSink(u, config.dashboardUrl(), config.resendMs(),
                config.httpTimeoutMs())));
        config.webhookUrl().ifPresent(u -> sinks.add(new WebhookSink(u, config.webhookSecret().orElseThrow(), config.dashboardUrl(),
                config.webhookAttempts(), config.backoffMs(), config.httpTimeoutMs(), config.queueMax(), this::deadLetter)));
        this.thread = new Thread(this::run, "curvewatch-sinks");
        thread.setDaemon(true);
    }

    /** Starts reading the alerts topic; the sinks run until {@link #close}. */
    public static AlertSinks start(SinksConfig config) {
        AlertSinks s = new AlertSinks(config);
        s.thread.start();
        LOG.info("alert sinks: Alertmanager {}, webhook {}, reading {}", config.alertmanagerUrl().map(Object::toString).orElse("-"),
                config.webhookUrl().map(Object::toString).orElse("-"), config.topics().alerts());
        return s;
    }

    private void run() {
        String topic = config.topics().alerts();
        try {
            List<TopicPartition> parts = consumer.partitionsFor(topic, Duration.ofSeconds(30)).stream()
                    .map(i -> new TopicPartition(topic, i.partition())).toList();
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            Map<TopicPartition, Long> liveFrom = new LinkedHashMap<>(consumer.endOffsets(parts, Duration.ofSeconds(30)));
            while (!stop) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    read++;
                    if (r.value() == null) {
                        continue; // a compaction tombstone
                    }
                    Alert a;
                    try {
                        a = decoder.decode(r.value());
                    } catch (InvalidRecordException e) {
                        LOG.warn("alert at {}-{}@{} does not decode ({}); the streams app publishes only valid ones", r.topic(),
                                r.partition(), r.offset(), e.getMessage());
                        continue;
                    }
                    boolean live = r.offset() >= liveFrom.getOrDefault(new TopicPartition(r.topic(), r.partition()), 0L);
                    Delivery d = new Delivery(a, r.topic(), r.partition(), r.offset(), r.key(), r.value());
                    for (Sink s : sinks) {
                        s.offer(d, live);
                    }
                }
            }
        } catch (WakeupException e) {
            if (!stop) {
                failure = e;
            }
        } catch (RuntimeException e) {
            failure = e;
            LOG.error("alert sinks stopped on a fatal error", e);
        } finally {
            consumer.close(Duration.ofSeconds(5));
        }
    }

    private void deadLetter(Delivery d, String why) {
        DeadLetter dl = DeadLetters.of(d.topic(), d.partition(), d.offset(), d.key(), d.value(), DEAD_LETTER_MAX_VALUE_BYTES,
                new InvalidRecordException(RejectReason.DELIVERY_FAILED, why), config.component());
        LOG.error("dead letter for alert {}: {}", d.alert().getId(), why);
        producer.send(new ProducerRecord<>(config.topics().deadLetters(), d.key(), deadLetters.serialize(null, dl)), (md, err) -> {
            if (err != null) {
                LOG.error("could not publish the dead letter of alert {}: {}", d.alert().getId(), err.toString());
            }
        });
    }

    /** Per sink: delivered and failed counts; and records read. */
    public Map<String, Long> stats() {
        Map<String, Long> m = new LinkedHashMap<>();
        m.put("read", read);
        for (Sink s : sinks) {
            String n = s instanceof AlertmanagerSink ? "alertmanager" : "webhook";
            m.put(n + "_delivered", s.delivered());
            m.put(n + "_failed", s.failed());
        }
        return m;
    }

    public boolean isUp() {
        return thread.isAlive() && failure == null;
    }

    @Override
    public void close() {
        stop = true;
        consumer.wakeup();
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        sinks.forEach(Sink::close);
        producer.close(Duration.ofSeconds(10));
    }
}
