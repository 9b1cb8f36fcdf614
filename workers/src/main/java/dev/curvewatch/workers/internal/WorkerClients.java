package dev.curvewatch.workers.internal;

import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.workers.WorkerConfig;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

import java.util.Properties;

/**
 * The settings of a worker's Kafka clients on top of the pass-through ones: the captures consumer
 * (read_committed, manual offsets, static membership) and the transactional producer. The
 * settings that make exactly-once hold are set; sizing ones ({@code putIfAbsent}) may be overridden
 * by {@code kafka.*}.
 */
final class WorkerClients {
    private WorkerClients() {
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
