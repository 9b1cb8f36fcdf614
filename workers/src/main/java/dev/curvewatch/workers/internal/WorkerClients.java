package dev.curvewatch.workers.internal;

import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.workers.WorkerConfig;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.function.BooleanSupplier;

/**
 * A worker's Kafka clients, opened in the order exactly-once needs: the transactional producer
 * first (it fences an earlier incarnation with the same id and aborts its open transaction, so
 * the factors topic's last stable offset moves past it before anything is restored), the runs
 * registry caught up, the restore consumer, then the captures consumer (read_committed, manual
 * offsets, static membership). The settings that make exactly-once hold are set; sizing ones
 * ({@code putIfAbsent}) may be overridden by {@code kafka.*}. Used by the poll thread only,
 * except {@code consumer.wakeup()}.
 */
final class WorkerClients implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(WorkerClients.class);

    TransactionalProducer producer;
    RunRegistry runs;
    KafkaConsumer<byte[], byte[]> restoreConsumer;
    KafkaConsumer<byte[], byte[]> consumer;

    /** Opens them all, or closes those opened and throws. {@code running} is false once the worker stops. */
    WorkerClients(WorkerConfig config, BooleanSupplier running, Duration timeout) {
        Properties client = config.kafkaProperties();
        String instanceId = config.instanceId();
        try {
            producer = new TransactionalProducer(() -> new KafkaProducer<>(transactionalProducer(config, client, instanceId)),
                    running);
            runs = new RunRegistry(client, config.topics().runs(), timeout);
            runs.catchUp(timeout, 0);
            restoreConsumer = new KafkaConsumer<>(FactorCheckpoints.consumerProperties(client));
            consumer = new KafkaConsumer<>(consumer(config, client, instanceId));
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** Closes every client opened; the captures consumer leaves the group. Failures are logged, not thrown. */
    @Override
    public void close() {
        closeQuietly(consumer == null ? null : () -> consumer.close(CloseOptions.timeout(Duration.ofSeconds(10))
                .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)));
        closeQuietly(restoreConsumer == null ? null : () -> restoreConsumer.close(Duration.ofSeconds(5)));
        closeQuietly(runs);
        closeQuietly(producer);
    }

    /** Seeks the captures consumer to the group's committed offsets of these partitions (their beginning if none). */
    void seekToCommitted(Set<TopicPartition> parts, Duration timeout) {
        Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(parts, timeout);
        for (TopicPartition tp : parts) {
            OffsetAndMetadata om = committed.get(tp);
            if (om == null) {
                consumer.seekToBeginning(List.of(tp));
            } else {
                consumer.seek(tp, om.offset());
            }
        }
    }

    private static void closeQuietly(AutoCloseable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (Exception e) {
            log.debug("close: {}", e.toString());
        }
    }

    /** Transactional id derived from group and instance: a restarted instance fences its predecessor. */
    static String transactionalId(WorkerConfig config, String instanceId) {
        return "curvewatch-worker-" + config.groupId() + "-" + instanceId;
    }

    /** The captures consumer; {@code client} is the pass-through settings, read once by the caller. */
    static Properties consumer(WorkerConfig config, Properties client, String instanceId) {
        Properties p = new Properties();
        p.putAll(client);
        p.setProperty(ConsumerConfig.GROUP_ID_CONFIG, config.groupId());
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Integer.toString(config.maxPollRecords()));
        p.setProperty(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES + (1 << 20)));
        p.putIfAbsent(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(2 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.putIfAbsent(ConsumerConfig.CLIENT_ID_CONFIG, "curvewatch-worker-" + instanceId);
        if (config.staticMembership()) {
            // a restarted instance (same id) takes its partitions back at once, without a rebalance
            // and without waiting for the killed member's session to expire
            p.setProperty(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        }
        p.setProperty(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.setProperty(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    static Properties transactionalProducer(WorkerConfig config, Properties client, String instanceId) {
        Properties p = new Properties();
        p.putAll(client);
        p.setProperty(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId(config, instanceId));
        p.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.putIfAbsent(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(1 << 20));
        p.putIfAbsent(ProducerConfig.BUFFER_MEMORY_CONFIG, Integer.toString(64 << 20));
        p.putIfAbsent(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "60000");
        p.putIfAbsent(ProducerConfig.CLIENT_ID_CONFIG, "curvewatch-worker-" + instanceId + "-tx");
        p.setProperty(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.setProperty(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }
}
