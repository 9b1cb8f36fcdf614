package dev.curvewatch.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.RunStatus;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.schemas.RecordTypes;
import dev.curvewatch.schemas.SchemaCatalog;
import dev.curvewatch.schemas.TensorCodec;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 4 acceptance: records the Python client publishes to a real broker decode in Java to the
 * identical values, and factors computed from them in Java equal numpy's.
 */
@Tag("integration")
class PythonClientIT {
    /** float64 sums of the same float32 inputs in another order: a few ulps of the largest entry. */
    static final double FACTOR_TOLERANCE = 1e-12;

    @Test
    void pythonRecordsDecodeIdenticallyAndGiveNumpysFactors(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("py");
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).capturePartitions(2).start()) {
            Path script = Path.of(System.getProperty("user.dir")).getParent().resolve("clients/python/tests/publish_fixture.py");
            Process py = new ProcessBuilder("/usr/bin/python3", script.toString(), kafka.bootstrapServers(), out.toString(), "py-run")
                    .redirectErrorStream(true).start();
            String log = new String(py.getInputStream().readAllBytes());
            assertTrue(py.waitFor(120, TimeUnit.SECONDS), "python client did not finish");
            assertEquals(0, py.exitValue(), "python client failed:\n" + log);

            JsonNode expected = new ObjectMapper().readTree(out.resolve("expected.json").toFile());
            assertEquals(Long.toHexString(SchemaCatalog.fingerprint(Capture.getClassSchema())),
                    expected.get("fingerprint").asText(), "Python and Java disagree on the Capture schema fingerprint");
            // every record type, not only those the client sends: canonical form byte for byte, then CRC-64-AVRO
            JsonNode schemas = expected.get("schemas");
            assertEquals(RecordTypes.ALL.size(), schemas.size(), "record types known to Python");
            for (Class<? extends SpecificRecord> type : RecordTypes.ALL) {
                Schema schema = RecordTypes.schemaOf(type);
                JsonNode fromPython = schemas.get(type.getSimpleName());
                assertEquals(SchemaNormalization.toParsingForm(schema), fromPython.get("canonical").asText(), type.getSimpleName());
                assertEquals(String.format("%016x", SchemaCatalog.fingerprint(schema)), fromPython.get("fingerprint").asText(),
                        type.getSimpleName());
            }
            CurvewatchTopics topics = CurvewatchTopics.withDefaultPrefix();
            JsonNode records = expected.get("records");
            List<ConsumerRecord<String, byte[]>> captured = readAll(kafka, topics.captures(), records.size());
            assertEquals(records.size(), captured.size());

            AvroDeserializer<Capture> decoder = new AvroDeserializer<>(Capture.class);
            Map<String, FactorAccumulator[]> factors = new HashMap<>();
            List<Capture> captures = new ArrayList<>();
            for (ConsumerRecord<String, byte[]> r : captured) {
                Capture c = decoder.decode(r.value());
                ContractChecks.checkStructure(c);
                ContractChecks.requireFinite(c);
                assertEquals(c.getRunId() + "/" + c.getLayer(), r.key());
                captures.add(c);
            }
            // per partition order is kept; match each Python record to its decoded twin by (layer, step, part, probe)
            for (JsonNode e : records) {
                Capture c = captures.stream().filter(x -> x.getLayer().equals(e.get("layer").asText())
                        && x.getStep() == e.get("step").asLong() && x.getPart() == e.get("part").asInt()
                        && x.getProbe() == e.get("probe").asBoolean()).findFirst().orElseThrow();
                assertArrayEquals(floats(out.resolve(e.get("a").asText())), TensorCodec.toFloatArray(c.getActivations(), "a"));
                assertArrayEquals(floats(out.resolve(e.get("g").asText())), TensorCodec.toFloatArray(c.getGradients(), "g"));
                List<String> ids = new ArrayList<>();
                e.get("sample_ids").forEach(n -> ids.add(n.asText()));
                assertEquals(ids, c.getSampleIds());
                if (!c.getProbe()) {
                    int tokens = e.get("tokens").asInt();
                    FactorAccumulator[] ag = factors.computeIfAbsent(c.getLayer(), l -> new FactorAccumulator[]{
                            FactorAccumulator.cumulative(c.getActivations().getShape().get(1), Precision.FLOAT64),
                            FactorAccumulator.cumulative(c.getGradients().getShape().get(1), Precision.FLOAT64)});
                    ag[0].add(c.getStep(), TensorCodec.floats(c.getActivations(), "a"), tokens);
                    ag[1].add(c.getStep(), TensorCodec.floats(c.getGradients(), "g"), tokens);
                }
            }
            assertEquals(2, factors.size());
            for (var f : (Iterable<Map.Entry<String, JsonNode>>) () -> expected.get("factors").fields()) {
                FactorAccumulator[] ag = factors.get(f.getKey());
                assertEquals(f.getValue().get("tokens").asLong(), ag[0].tokenCount());
                assertClose(doubles(out.resolve(f.getValue().get("A").asText())), ag[0].mean(), f.getKey() + ".A");
                assertClose(doubles(out.resolve(f.getValue().get("G").asText())), ag[1].mean(), f.getKey() + ".G");
            }

            List<ConsumerRecord<String, byte[]>> runs = readAll(kafka, topics.runs(), 2);
            assertEquals(2, runs.size(), "RunInfo at start and at close");
            RunInfo run = new AvroDeserializer<>(RunInfo.class).decode(runs.get(0).value());
            assertEquals("py-run", run.getRunId());
            assertEquals("pytorch-client", run.getSource());
            assertEquals(RunStatus.RUNNING, run.getStatus());
            assertTrue(run.getLayers().get(1).getTransposed(), "Conv1D layer registered as transposed");
            assertEquals(RunStatus.FINISHED, new AvroDeserializer<>(RunInfo.class).decode(runs.get(1).value()).getStatus());
            List<ConsumerRecord<String, byte[]>> weights = readAll(kafka, topics.weights(), 4);
            assertEquals(4, weights.size(), "weights every 2 steps of 3, two layers");
            WeightSnapshot w = new AvroDeserializer<>(WeightSnapshot.class).decode(weights.get(0).value());
            assertEquals(List.of(5, w.getLayer().equals("fc1") ? 6 : 5), w.getWeight().getShape());

            runExample(kafka, topics, dir);
        }
    }

    /** examples/flipped_labels.py end to end on the same broker: every record it sends decodes and passes the contract checks. */
    static void runExample(LocalKafka kafka, CurvewatchTopics topics, Path dir) throws Exception {
        int steps = 12;
        Path script = Path.of(System.getProperty("user.dir")).getParent().resolve("clients/python/examples/flipped_labels.py");
        Process py = new ProcessBuilder("/usr/bin/python3", script.toString(), "--bootstrap", kafka.bootstrapServers(),
                "--run-id", "flipped-it", "--steps", Integer.toString(steps)).redirectErrorStream(true).start();
        String log = new String(py.getInputStream().readAllBytes());
        assertTrue(py.waitFor(120, TimeUnit.SECONDS), "example did not finish");
        assertEquals(0, py.exitValue(), "example failed:\n" + log);
        // per step two layers; a sampled-label pass every 5 steps and a probe every 10, both on the two layers
        int expectedCaptures = 2 * steps + 2 * ((steps + 4) / 5) + 2 * ((steps + 9) / 10);
        AvroDeserializer<Capture> decoder = new AvroDeserializer<>(Capture.class);
        List<Capture> captures = new ArrayList<>();
        for (ConsumerRecord<String, byte[]> r : readAll(kafka, topics.captures(), expectedCaptures, k -> k.startsWith("flipped-it/"))) {
            Capture c = decoder.decode(r.value());
            ContractChecks.checkStructure(c);
            ContractChecks.requireFinite(c);
            captures.add(c);
        }
        assertEquals(expectedCaptures, captures.size(), "example captures");
        assertEquals(2 * ((steps + 9) / 10), captures.stream().filter(Capture::getProbe).count(), "probe captures");
        assertEquals(2 * ((steps + 4) / 5), captures.stream().filter(c -> c.getFisher() == FisherKind.SAMPLED).count(),
                "sampled-label (true Fisher) captures");
        List<RunStatus> statuses = new ArrayList<>();
        for (ConsumerRecord<String, byte[]> r : readAll(kafka, topics.runs(), 2, "flipped-it"::equals)) {
            statuses.add(new AvroDeserializer<>(RunInfo.class).decode(r.value()).getStatus());
        }
        assertEquals(List.of(RunStatus.RUNNING, RunStatus.FINISHED), statuses);
    }

    static void assertClose(double[] expected, double[] actual, String what) {
        assertEquals(expected.length, actual.length, what);
        double scale = 0;
        for (double v : expected) {
            scale = Math.max(scale, Math.abs(v));
        }
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], actual[i], FACTOR_TOLERANCE * scale, what + "[" + i + "]");
        }
    }

    static float[] floats(Path file) throws Exception {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        float[] v = new float[b.remaining() / 4];
        b.asFloatBuffer().get(v);
        return v;
    }

    static double[] doubles(Path file) throws Exception {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        double[] v = new double[b.remaining() / 8];
        b.asDoubleBuffer().get(v);
        return v;
    }

    static List<ConsumerRecord<String, byte[]>> readAll(LocalKafka kafka, String topic, int expected) {
        return readAll(kafka, topic, expected, key -> true);
    }

    /** The topic's records whose key passes {@code keys}, from the beginning, until {@code expected} of them or 30 s passed. */
    static List<ConsumerRecord<String, byte[]>> readAll(LocalKafka kafka, String topic, int expected, Predicate<String> keys) {
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = consumer.partitionsFor(topic).stream()
                    .map(i -> new TopicPartition(topic, i.partition())).toList();
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (out.size() < expected && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(200)).forEach(r -> {
                    if (keys.test(r.key())) {
                        out.add(r);
                    }
                });
            }
            // anything beyond the expected count would be a duplicate: give it a moment to show up
            consumer.poll(Duration.ofMillis(500)).forEach(r -> {
                if (keys.test(r.key())) {
                    out.add(r);
                }
            });
        }
        return out;
    }
}
