package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.CapturePublisher;
import dev.curvewatch.trainer.LayerCapture;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A watched fine-tune publishing to a real KRaft broker: every record arrives and decodes. */
@Tag("integration")
class WatchedTrainingIT {

    @Test
    void publishesRunCapturesProbesAndWeights(@TempDir Path dir) throws Exception {
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start()) {
            // token budget 37 of the 100 examples per step; probes are published whole
            WatchedTraining.Config c = new WatchedTraining.Config("it-run", 5, 0.1, 32, 1, 100, 1e-3f, 5, 10,
                    true, 37, kafka.bootstrapServers(), CapturePublisher.Policy.BLOCK, 16 << 20, null, null, null);
            Map<String, Object> r = new WatchedTraining(c, System.out).run();
            long steps = (Long) r.get("steps");
            assertEquals(20L, steps);
            assertEquals(0L, r.get("dropped_captures"));
            assertEquals(0L, r.get("failed_records"));
            CurvewatchTopics topics = CurvewatchTopics.withDefaultPrefix();
            List<ConsumerRecord<String, byte[]>> caps = readAll(kafka.bootstrapServers(), topics.captures(), 2 * 20 + 2 * 2);
            int probes = 0;
            java.util.Map<Long, List<String>> stepIds = new java.util.HashMap<>();
            AvroDeserializer<Capture> de = new AvroDeserializer<>(Capture.class);
            for (ConsumerRecord<String, byte[]> rec : caps) {
                Capture cap = de.deserialize(rec.topic(), rec.value());
                assertTrue(rec.key().equals("it-run/fc1") || rec.key().equals("it-run/fc2"), rec.key());
                probes += cap.getProbe() ? 1 : 0;
                int tokens = cap.getActivations().getShape().get(0);
                assertEquals(cap.getProbe() ? 100 : 37, tokens, "tokens of " + rec.key() + " step " + cap.getStep());
                assertEquals(tokens, cap.getSampleIds().size());
                assertEquals(tokens, cap.getExampleLosses().size());
                if (!cap.getProbe()) {
                    assertEquals(new java.util.TreeSet<>(cap.getSampleIds()).size(), tokens, "distinct examples");
                    stepIds.computeIfAbsent(cap.getStep(), k -> new ArrayList<>()).add(cap.getSampleIds().toString());
                }
            }
            // both layers of a step carry the same sampled examples
            stepIds.values().forEach(v -> assertEquals(1, new java.util.HashSet<>(v).size(), v.toString()));
            assertEquals(20, stepIds.size());
            assertEquals(44, caps.size());
            assertEquals(4, probes); // steps 0 and 10, two layers
            List<ConsumerRecord<String, byte[]>> runs = readAll(kafka.bootstrapServers(), topics.runs(), 2);
            RunInfo info = new AvroDeserializer<>(RunInfo.class).deserialize(topics.runs(), runs.get(0).value());
            assertEquals("djl-trainer", info.getSource());
            assertEquals(2, runs.size(), "registered at the start, again at the end");
            assertEquals(dev.curvewatch.avro.RunStatus.RUNNING, info.getStatus());
            RunInfo last = new AvroDeserializer<>(RunInfo.class).deserialize(topics.runs(), runs.get(1).value());
            assertEquals(dev.curvewatch.avro.RunStatus.FINISHED, last.getStatus());
            assertEquals(info.getLayers(), last.getLayers());
            List<ConsumerRecord<String, byte[]>> ws = readAll(kafka.bootstrapServers(), topics.weights(), 10);
            WeightSnapshot w = new AvroDeserializer<>(WeightSnapshot.class).deserialize(topics.weights(), ws.get(0).value());
            assertEquals(List.of(32, 32), w.getWeight().getShape());
            assertEquals(10, ws.size()); // steps 0, 5, 10, 15 and the final step 19, x two layers
            java.util.Set<Long> weightSteps = new java.util.TreeSet<>();
            for (ConsumerRecord<String, byte[]> rec : ws) {
                weightSteps.add(new AvroDeserializer<>(WeightSnapshot.class).deserialize(topics.weights(), rec.value()).getStep());
            }
            assertEquals(java.util.Set.of(0L, 5L, 10L, 15L, 19L), weightSteps);

            // a 12 MB weight goes out as row parts under the 8 MiB record size and reassembles exactly
            int dOut = 3000;
            int dIn = 1000;
            float[] big = new float[dOut * dIn];
            float[] bigBias = new float[dOut];
            java.util.Random rnd = new java.util.Random(3);
            for (int i = 0; i < big.length; i++) {
                big[i] = (float) rnd.nextGaussian();
            }
            for (int i = 0; i < dOut; i++) {
                bigBias[i] = i;
            }
            CurvewatchTopics bigTopics = new CurvewatchTopics("big.");
            try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(
                    KafkaClientSettings.forBootstrap(kafka.bootstrapServers()))) {
                var spec = bigTopics.specs(1).stream().filter(t -> t.name().equals(bigTopics.weights())).findFirst().orElseThrow();
                admin.createTopics(List.of(new org.apache.kafka.clients.admin.NewTopic(spec.name(), 1, (short) 1)
                        .configs(spec.configs()))).all().get();
            }
            try (CapturePublisher pub = new CapturePublisher(kafka.bootstrapServers(), bigTopics,
                    CapturePublisher.Policy.BLOCK, 64 << 20)) {
                pub.publishWeights("big-run", "proj", 12, big, dOut, dIn, bigBias);
                pub.flush();
                assertEquals(0L, pub.failed());
            }
            List<ConsumerRecord<String, byte[]>> bigParts = readAll(kafka.bootstrapServers(), bigTopics.weights(), 2);
            assertEquals(2, bigParts.size(), "12 MB of weights in two parts of at most 8 MiB");
            dev.curvewatch.schemas.WeightAssembler assembler = new dev.curvewatch.schemas.WeightAssembler();
            dev.curvewatch.avro.LayerInfo proj = new dev.curvewatch.avro.LayerInfo("proj", dIn, dOut, false, true);
            AvroDeserializer<WeightSnapshot> wde = new AvroDeserializer<>(WeightSnapshot.class);
            assertTrue(bigParts.get(0).value().length <= CapturePublisher.MAX_RECORD_BYTES);
            assertTrue(assembler.accept(wde.decode(bigParts.get(0).value()), proj).isEmpty());
            var whole = assembler.accept(wde.decode(bigParts.get(1).value()), proj).orElseThrow();
            org.junit.jupiter.api.Assertions.assertArrayEquals(big, whole.weight());
            org.junit.jupiter.api.Assertions.assertArrayEquals(bigBias, whole.bias());

            // DROP: a 1 KiB budget admits one capture (~51 KB) at a time; captures sent back to back
            // while one is unacknowledged are dropped, and every one of them is counted.
            int attempts = 200;
            int accepted = 0;
            LayerCapture cap = new LayerCapture(0, 100, 64, 64, new float[100 * 64], new float[100 * 64]);
            String[] ids = new String[100];
            java.util.Arrays.fill(ids, "x");
            try (CapturePublisher pub = new CapturePublisher(kafka.bootstrapServers(), topics,
                    CapturePublisher.Policy.DROP, 1024)) {
                for (int i = 0; i < attempts; i++) {
                    if (pub.publishCapture("it-drop", "fc1", i, cap, ids, null, false, FisherKind.EMPIRICAL, 100)) {
                        accepted++;
                    }
                }
                pub.flush();
                assertTrue(pub.dropped() > 0, "nothing dropped: the budget never filled");
                assertEquals(attempts, accepted + pub.dropped(), "every capture is either admitted or counted");
                assertEquals(accepted, pub.sent(), "every admitted capture acknowledged");
                assertEquals(0L, pub.failed());
            }
        }
    }

    private static List<ConsumerRecord<String, byte[]>> readAll(String bootstrap, String topic, int expected) {
        Properties p = KafkaClientSettings.forBootstrap(bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, "it-" + topic);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, String.valueOf(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30_000;
            while (System.currentTimeMillis() < deadline) {
                consumer.poll(Duration.ofMillis(500)).forEach(out::add);
                if (out.size() >= expected) {
                    // one more short poll to catch unexpected extras
                    consumer.poll(Duration.ofMillis(500)).forEach(out::add);
                    break;
                }
            }
        }
        return out;
    }
}
