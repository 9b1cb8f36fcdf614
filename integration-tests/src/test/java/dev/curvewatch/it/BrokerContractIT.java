package dev.curvewatch.it;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.schemas.TopicSpec;
import dev.curvewatch.schemas.RecordTypes;
import dev.curvewatch.schemas.SampleRecords;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue 2 acceptance: every record type through the real broker and the serde; tensor size limits. */
@Tag("integration")
class BrokerContractIT {
    @TempDir
    static Path dir;
    static LocalKafka kafka;
    static final CurvewatchTopics TOPICS = CurvewatchTopics.withDefaultPrefix();

    @BeforeAll
    static void startBroker() throws Exception {
        kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).capturePartitions(2).start();
    }

    @AfterAll
    static void stopBroker() {
        if (kafka != null) {
            kafka.close();
        }
    }

    static Properties producerProps() {
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(64 * 1024 * 1024));
        p.put(ProducerConfig.BUFFER_MEMORY_CONFIG, Long.toString(128L * 1024 * 1024));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "zstd");
        return p;
    }

    static List<ConsumerRecord<String, byte[]>> readAll(String topic, int expected) {
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(32 * 1024 * 1024));
        p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(64 * 1024 * 1024));
        List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p)) {
            var partitions = consumer.partitionsFor(topic).stream()
                    .map(i -> new org.apache.kafka.common.TopicPartition(topic, i.partition())).toList();
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (out.size() < expected && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(200)).forEach(out::add);
            }
        }
        return out;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    @Test
    void everyRecordTypeTravelsThroughTheBroker() throws Exception {
        List<SpecificRecord> records = SampleRecords.oneOfEach(new Random(11));
        String topic = TOPICS.signals(); // any topic: the contract is per record, the header names the type
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(producerProps())) {
            for (SpecificRecord r : records) {
                producer.send(new ProducerRecord<>(topic, r.getClass().getSimpleName(),
                        new AvroSerializer(r.getClass()).serialize(topic, r))).get();
            }
        }
        List<ConsumerRecord<String, byte[]>> back = readAll(topic, records.size());
        assertEquals(records.size(), back.size());
        for (SpecificRecord r : records) {
            ConsumerRecord<String, byte[]> rec = back.stream().filter(c -> c.key().equals(r.getClass().getSimpleName())).findFirst().orElseThrow();
            assertEquals(r, new AvroDeserializer(r.getClass()).deserialize(topic, rec.value()), r.getClass().getSimpleName());
        }
        assertEquals(RecordTypes.ALL.size(), back.size());
    }

    @Test
    void topicsHaveTheDesignedSettings() throws Exception {
        try (Admin admin = Admin.create(KafkaClientSettings.forBootstrap(kafka.bootstrapServers()))) {
            Set<String> names = admin.listTopics().names().get();
            TOPICS.specs(2).forEach(spec -> assertTrue(names.contains(spec.name()), spec.name()));
            var captures = new ConfigResource(ConfigResource.Type.TOPIC, TOPICS.captures());
            var factors = new ConfigResource(ConfigResource.Type.TOPIC, TOPICS.factors());
            var configs = admin.describeConfigs(List.of(captures, factors)).all().get();
            assertEquals("16777216", configs.get(captures).get("max.message.bytes").value());
            assertEquals(TopicSpec.AS_PRODUCED, configs.get(captures).get("compression.type").value(), "float tensors: kept as sent");
            assertEquals(TopicSpec.AS_PRODUCED, configs.get(factors).get("compression.type").value());
            assertEquals("compact", configs.get(factors).get("cleanup.policy").value());
            assertEquals(TopicSpec.COMPACTED_SEGMENT_MS, configs.get(factors).get("segment.ms").value());
            assertEquals("0.1", configs.get(factors).get("min.cleanable.dirty.ratio").value());
            assertEquals("delete", configs.get(captures).get("cleanup.policy").value());
            assertEquals(2, admin.describeTopics(List.of(TOPICS.captures())).allTopicNames().get()
                    .get(TOPICS.captures()).partitions().size());
            ConfigEntry runsPolicy = admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC, TOPICS.runs())))
                    .all().get().values().iterator().next().get("cleanup.policy");
            assertEquals("compact", runsPolicy.value());
        }
    }

    @Test
    void eightMegabyteCaptureIsAcceptedAndOversizedOneFailsClearly() throws Exception {
        // 1024 tokens x (1024 + 1024) float32 = 8 MiB of tensor data
        Capture big = SampleRecords.capture(new Random(12), "run-big", "fc1", 1, 1024, 1024, 1024);
        byte[] bytes = new AvroSerializer<>(Capture.class).serialize(TOPICS.captures(), big);
        assertTrue(bytes.length > 8 * 1024 * 1024, "record is " + bytes.length + " bytes");
        // 2048 tokens x 2048 floats x 2 = 32 MiB: above the topic's 16 MiB limit
        Capture huge = SampleRecords.capture(new Random(13), "run-big", "fc1", 2, 2048, 2048, 2048);
        byte[] hugeBytes = new AvroSerializer<>(Capture.class).serialize(TOPICS.captures(), huge);
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(producerProps())) {
            producer.send(new ProducerRecord<>(TOPICS.captures(), "run-big/fc1", bytes)).get(60, TimeUnit.SECONDS);
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> producer.send(new ProducerRecord<>(TOPICS.captures(), "run-big/fc1", hugeBytes)).get(60, TimeUnit.SECONDS));
            assertInstanceOf(RecordTooLargeException.class, e.getCause(), String.valueOf(e.getCause()));
            assertTrue(e.getCause().getMessage().toLowerCase().contains("large"), e.getCause().getMessage());
        }
        List<ConsumerRecord<String, byte[]>> back = readAll(TOPICS.captures(), 1);
        assertEquals(1, back.size(), "exactly the accepted capture is on the topic");
        assertEquals(big, new AvroDeserializer<>(Capture.class).decode(back.get(0).value()));
    }
}
