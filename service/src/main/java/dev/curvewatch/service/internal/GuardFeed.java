package dev.curvewatch.service.internal;

import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
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

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * The guard-decisions feed (assign mode, from the beginning, read_committed): what was decided
 * before the start only fills {@link GuardWatch}'s list; what arrives afterwards is live (re-arm,
 * harm check, SSE). A record that does not decode or fails its checks is logged and skipped: the
 * streams app, which reads the same topic, dead-letters it.
 */
public final class GuardFeed extends ConsumerLoop {
    private static final Logger LOG = LoggerFactory.getLogger(GuardFeed.class);
    private final String topic;
    private final GuardWatch watch;
    private final long pollMs;
    private final AvroDeserializer<GuardDecision> decoder = new AvroDeserializer<>(GuardDecision.class);

    public GuardFeed(ServiceConfig config, GuardWatch watch, String component) {
        this(config.topics().guardDecisions(), watch, config.pollTimeoutMs(), consumer(config, component));
    }

    GuardFeed(String topic, GuardWatch watch, long pollMs, Consumer<byte[], byte[]> consumer) {
        super("guard-decisions", consumer);
        this.topic = topic;
        this.watch = watch;
        this.pollMs = pollMs;
    }

    private static KafkaConsumer<byte[], byte[]> consumer(ServiceConfig config, String component) {
        Properties p = config.kafkaProperties();
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, component + "-guard");
        p.remove(ConsumerConfig.GROUP_ID_CONFIG);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    @Override
    protected void loop() {
        List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(30));
        List<TopicPartition> parts = infos.stream().map(i -> new TopicPartition(topic, i.partition())).toList();
        consumer.assign(parts);
        consumer.seekToBeginning(parts);
        Map<TopicPartition, Long> liveFrom = new HashMap<>(consumer.endOffsets(parts, Duration.ofSeconds(30)));
        while (!stopping()) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(pollMs))) {
                boolean live = r.offset() >= liveFrom.getOrDefault(new TopicPartition(r.topic(), r.partition()), 0L);
                try {
                    GuardDecision d = decoder.decode(r.value());
                    ContractChecks.checkGuardDecision(d);
                    watch.onDecision(d, live);
                } catch (InvalidRecordException e) {
                    LOG.warn("guard decision at {}-{}@{} skipped: {}", r.topic(), r.partition(), r.offset(), e.getMessage());
                } catch (RuntimeException e) {
                    LOG.error("guard decision at {}-{}@{} could not be handled", r.topic(), r.partition(), r.offset(), e);
                }
            }
            watch.answerAppliedNowOwned();
            polled();
        }
    }
}
