package dev.curvewatch.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.RunStatus;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.EigenbasisRefresh;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.EditCandidateParts;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.schemas.RecordTypes;
import dev.curvewatch.schemas.SchemaCatalog;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

import static dev.curvewatch.trainer.testing.TrainerSimulator.argmax;
import static dev.curvewatch.trainer.testing.TrainerSimulator.crossEntropy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The Python client against Java on a real broker with the shipped defaults (4 capture partitions):
 * records it publishes decode in Java to the identical values, land in the partitions the workers
 * expect and give numpy's factors through a real worker (issues 4 and 11), and it answers Java's
 * edit candidates with the losses Java computes for the same edits.
 */
@Tag("integration")
class PythonClientIT {
    /** float64 sums of the same float32 inputs in another order: a few ulps of the largest entry. */
    static final double FACTOR_TOLERANCE = 1e-12;

    @Test
    void pythonRecordsDecodeIdenticallyAndGiveNumpysFactors(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("py");
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             Worker worker = Worker.start(WorkerConfig.of(Map.of(WorkerConfig.BOOTSTRAP, kafka.bootstrapServers(),
                     WorkerConfig.INSTANCE_ID, "python-it-worker")))) {
            assertEquals(4, partitions(kafka, kafka.topics().captures()), "the shipped default");
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
                assertEquals(e.get("tokens").asInt(), c.getActivations().getShape().get(0));
            }
            Map<String, FactorAccumulator[]> factors = accumulate(captures);
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

            // the worker took every capture of both layers (issue 11: with librdkafka's default partitioner
            // py-run/fc1 went to partition 3 of 4, the worker expects 0, and all of its captures were dead
            // letters): its checkpoints cover every published token and equal numpy's factors
            Map<String, FactorCheckpoint> checkpoints = awaitCheckpoints(kafka, "py-run", expected.get("factors"), worker);
            for (var f : (Iterable<Map.Entry<String, JsonNode>>) () -> expected.get("factors").fields()) {
                FactorCheckpoint cp = checkpoints.get(f.getKey());
                assertClose(doubles(out.resolve(f.getValue().get("A").asText())), cp.meanA(), f.getKey() + ".A (worker)");
                assertClose(doubles(out.resolve(f.getValue().get("G").asText())), cp.meanG(), f.getKey() + ".G (worker)");
            }
            assertEquals(List.of(), deadLetters(kafka), "dead letters");

            runExample(kafka, topics, dir);
            assertEquals(List.of(), deadLetters(kafka), "dead letters");
        }
    }

    /** The worker's newest checkpoints of the run's layers once they cover the tokens numpy counted (60 s at most). */
    static Map<String, FactorCheckpoint> awaitCheckpoints(LocalKafka kafka, String run, JsonNode factors, Worker worker)
            throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        Map<String, FactorCheckpoint> byLayer = new HashMap<>();
        while (System.nanoTime() < deadline) {
            byLayer.clear();
            FactorCheckpoints.readLatest(KafkaClientSettings.forBootstrap(kafka.bootstrapServers()), kafka.topics(),
                    Duration.ofSeconds(10)).values().stream().filter(cp -> cp.runId().equals(run))
                    .forEach(cp -> byLayer.put(cp.layer(), cp));
            boolean complete = true;
            for (var f : (Iterable<Map.Entry<String, JsonNode>>) factors::fields) {
                FactorCheckpoint cp = byLayer.get(f.getKey());
                complete &= cp != null && cp.tokenCount() == f.getValue().get("tokens").asLong();
            }
            if (complete) {
                return byLayer;
            }
            TimeUnit.MILLISECONDS.sleep(500);
        }
        return fail("the worker's checkpoints of " + run + " did not cover every token within 60 s: "
                + byLayer.keySet() + "; worker " + worker.phase() + "; dead letters " + deadLetters(kafka));
    }

    static int partitions(LocalKafka kafka, String topic) {
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p)) {
            return consumer.partitionsFor(topic).size();
        }
    }

    /** "topic key reason_code: reason" of every record on the dead-letters topic (read to its end offsets). */
    static List<String> deadLetters(LocalKafka kafka) {
        String topic = kafka.topics().deadLetters();
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 2 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES);
        List<String> out = new ArrayList<>();
        AvroDeserializer<DeadLetter> decoder = new AvroDeserializer<>(DeadLetter.class);
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = consumer.partitionsFor(topic).stream().map(i -> new TopicPartition(topic, i.partition())).toList();
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            Map<TopicPartition, Long> end = consumer.endOffsets(parts);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (parts.stream().anyMatch(tp -> consumer.position(tp) < end.get(tp)) && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    DeadLetter d = decoder.decode(r.value());
                    out.add(d.getTopic() + " " + r.key() + " " + d.getReasonCode() + ": " + d.getReason());
                }
            }
        }
        return out;
    }

    /**
     * examples/flipped_labels.py end to end on the same broker: every record it sends decodes and passes the
     * contract checks, and it answers an edit candidate for its second hidden layer (256 x 256) built from
     * the factors of its first captures, while it trains or lingers after training.
     */
    static void runExample(LocalKafka kafka, CurvewatchTopics topics, Path dir) throws Exception {
        int steps = 12;
        String run = "flipped-it";
        Path script = Path.of(System.getProperty("user.dir")).getParent().resolve("clients/python/examples/flipped_labels.py");
        Process py = new ProcessBuilder("/usr/bin/python3", script.toString(), "--bootstrap", kafka.bootstrapServers(),
                "--run-id", run, "--steps", Integer.toString(steps), "--linger", "90").redirectErrorStream(true).start();
        try {
            ProcessLines lines = new ProcessLines(py);
            List<ConsumerRecord<String, byte[]>> first = readAll(kafka, topics.captures(), 2, (run + "/2")::equals);
            assertTrue(first.size() >= 2, "first captures of layer 2:\n" + lines.log());
            Candidate candidate = Candidate.of(run, "flipped-c1", "2", factorsOf(first).get("2"));
            send(kafka, List.of(candidate.record()));
            List<ConsumerRecord<String, byte[]>> answers = readAll(kafka, topics.probeResults(), 1, run::equals);
            assertTrue(py.waitFor(120, TimeUnit.SECONDS), "example did not finish:\n" + lines.log());
            assertEquals(0, py.exitValue(), "example failed:\n" + lines.log());
            String log = lines.log();
            assertTrue(log.contains("'answered': 1"), "the example reports its answer:\n" + log);

            assertEquals(1, answers.size(), "one ProbeResult for the one candidate:\n" + log);
            ProbeResult result = new AvroDeserializer<>(ProbeResult.class).decode(answers.get(0).value());
            assertEquals("flipped-c1", result.getCandidateId());
            assertEquals("2", result.getLayer());
            assertEquals(candidate.record().getRhos(), result.getRhos());
            List<ExampleLosses> examples = result.getExamples();
            List<String> probeIds = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                probeIds.add("probe-" + i);
            }
            assertEquals(probeIds, examples.stream().filter(ExampleLosses::getProbe).map(ExampleLosses::getSampleId).toList());
            List<String> trainIds = examples.stream().filter(e -> !e.getProbe()).map(ExampleLosses::getSampleId).toList();
            assertTrue(!trainIds.isEmpty() && trainIds.size() <= 512, trainIds.size() + " training examples");
            assertEquals(trainIds.size(), new LinkedHashSet<>(trainIds).size(), "training examples are distinct");
            assertTrue(trainIds.stream().allMatch(id -> id.startsWith("train-")), trainIds.toString());
            for (ExampleLosses e : examples) {
                assertEquals(STANDARD_RHOS.length, e.getLossEdited().size(), e.getSampleId());
                assertEquals(STANDARD_RHOS.length, e.getCorrectEdited().size(), e.getSampleId());
                assertTrue(Float.isFinite(e.getLossNow()) && e.getLossNow() >= 0, e.getSampleId() + " " + e.getLossNow());
                assertTrue(e.getLossEdited().stream().allMatch(l -> Float.isFinite(l) && l >= 0), e.getSampleId() + " " + e.getLossEdited());
            }

            // per step two layers; a sampled-label pass every 5 steps and a probe every 10, both on the two layers
            int expectedCaptures = 2 * steps + 2 * ((steps + 4) / 5) + 2 * ((steps + 9) / 10);
            AvroDeserializer<Capture> decoder = new AvroDeserializer<>(Capture.class);
            List<Capture> captures = new ArrayList<>();
            for (ConsumerRecord<String, byte[]> r : readAll(kafka, topics.captures(), expectedCaptures, k -> k.startsWith(run + "/"))) {
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
            for (ConsumerRecord<String, byte[]> r : readAll(kafka, topics.runs(), 2, run::equals)) {
                statuses.add(new AvroDeserializer<>(RunInfo.class).decode(r.value()).getStatus());
            }
            assertEquals(List.of(RunStatus.RUNNING, RunStatus.FINISHED), statuses);
        } finally {
            py.destroyForcibly();
        }
    }

    /** The service's candidate grid: 1-rho from 0.4 to 1e-5, most aggressive first (19 values). */
    static final double[] STANDARD_RHOS = RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER).candidates();
    /** Loss and argmax agreement between Python's float32 forward passes and Java's float64 ones. */
    static final double LOSS_TOLERANCE = 1e-5;
    /** Top-two logit margins below this may legitimately order differently in float32 and float64. */
    static final double ARGMAX_MARGIN = 1e-4;

    /**
     * The exact calibration round trip (SERVICE-CONTRACT §1) across languages: Java accumulates the
     * factors of a Python run from its captures, sends EditCandidates built with the curvature module
     * (eigenbases rounded to float32 as the service sends them, KeepMassSelector thresholds for the
     * RhoCalibrator.standard grid), and checks the ProbeResults the Python client answers with against
     * its own float64 forward passes of the same model under CurvatureEdit's W'.
     */
    @Test
    void pythonAnswersEditCandidatesWithTheLossesOfJavasEdits(@TempDir Path dir) throws Exception {
        String run = "py-answer";
        Path out = dir.resolve("py");
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start()) {
            CurvewatchTopics topics = kafka.topics();
            Path script = Path.of(System.getProperty("user.dir")).getParent().resolve("clients/python/tests/answer_fixture.py");
            Process py = new ProcessBuilder("/usr/bin/python3", script.toString(), kafka.bootstrapServers(), out.toString(), run)
                    .redirectErrorStream(true).start();
            try {
                ProcessLines lines = new ProcessLines(py);
                int captureCount = Integer.parseInt(lines.await(l -> l.startsWith("ready "), Duration.ofSeconds(120)).substring(6).trim());

                List<ConsumerRecord<String, byte[]>> captured = readAll(kafka, topics.captures(), captureCount, k -> k.startsWith(run + "/"));
                assertEquals(captureCount, captured.size(), "captures of the Python run");
                Map<String, FactorAccumulator[]> factors = factorsOf(captured);
                assertEquals(List.of("fc1", "fc2"), factors.keySet().stream().sorted().toList());

                double[] rhos = STANDARD_RHOS;
                Map<String, CurvatureEdit> edits = new HashMap<>();
                Map<String, EditCandidate> sent = new HashMap<>();
                for (String layer : List.of("fc1", "fc2")) {
                    Candidate c = Candidate.of(run, layer + "-v1", layer, factors.get(layer));
                    edits.put(layer, c.edit());
                    sent.put(layer, c.record());
                }
                EditCandidate other = EditCandidate.newBuilder(sent.get("fc1")).setRunId("other-run").setCandidateId("not-ours").build();
                float[] scaled = TensorCodec.toFloatArray(sent.get("fc1").getBasisG(), "basis_g");
                for (int i = 0; i < scaled.length; i++) {
                    scaled[i] *= 2;
                }
                EditCandidate malformed = EditCandidate.newBuilder(sent.get("fc1")).setCandidateId("not-orthonormal")
                        .setBasisG(TensorCodec.ofFloats(scaled, 12, 12)).build();
                // fc2's candidate in row parts of ~3 rows, as the service sends one above candidate.part.max.bytes
                EditCandidate fc2 = sent.get("fc2");
                int rowBytes = 4 * Math.max(fc2.getBasisG().getShape().get(0), fc2.getBasisA().getShape().get(0));
                int rest = new AvroSerializer<>(EditCandidate.class).serialize("t", fc2).length - fc2.getBasisG().getData().remaining()
                        - fc2.getBasisA().getData().remaining();
                List<EditCandidate> fc2Parts = EditCandidateParts.split(fc2, 4096 + rest + 3 * rowBytes + 256);
                assertTrue(fc2Parts.size() >= 3, fc2Parts.size() + " parts");
                List<EditCandidate> records = new ArrayList<>(List.of(other, malformed, sent.get("fc1")));
                records.addAll(fc2Parts);
                send(kafka, records);

                List<ConsumerRecord<String, byte[]>> answers = readAll(kafka, topics.probeResults(), 2, k -> true);
                assertTrue(py.waitFor(120, TimeUnit.SECONDS), "answer fixture did not finish:\n" + lines.log());
                assertEquals(0, py.exitValue(), "answer fixture failed:\n" + lines.log());
                JsonNode answered = new ObjectMapper().readTree(out.resolve("answered.json").toFile());
                JsonNode counts = answered.get("counts");
                assertEquals(2 + fc2Parts.size(), counts.get("received").asInt(), "another run's candidate is not even received: " + counts);
                assertEquals(fc2Parts.size(), counts.get("parts_received").asInt(), "fc2's candidate came in parts: " + counts);
                assertEquals(1, counts.get("refused").asInt(), "the non-orthonormal basis is refused: " + counts);
                assertEquals(2, counts.get("answered").asInt(), counts.toString());
                assertEquals(0, counts.get("failed").asInt() + counts.get("skipped").asInt() + counts.get("expired").asInt(), counts.toString());
                assertEquals(2, answers.size(), "one ProbeResult per good candidate, none for the refused or foreign ones");

                PyMlp model = PyMlp.of(answered.get("parameters"));
                List<String> expectedIds = new ArrayList<>();
                answered.get("probe_ids").forEach(n -> expectedIds.add(n.asText()));
                int probes = expectedIds.size();
                expectedIds.addAll(recentDistinct(answered.get("trained_ids"), answered.get("recent_examples").asInt()));
                AvroDeserializer<ProbeResult> results = new AvroDeserializer<>(ProbeResult.class);
                List<String> answeredLayers = new ArrayList<>();
                for (ConsumerRecord<String, byte[]> r : answers) {
                    assertEquals(run, r.key());
                    ProbeResult result = results.decode(r.value());
                    String layer = result.getLayer();
                    answeredLayers.add(layer);
                    EditCandidate c = sent.get(layer);
                    assertEquals(c.getCandidateId(), result.getCandidateId());
                    assertEquals(run, result.getRunId());
                    assertEquals(6, result.getStep());
                    assertEquals(c.getRhos(), result.getRhos());
                    List<ExampleLosses> examples = result.getExamples();
                    assertEquals(expectedIds, examples.stream().map(ExampleLosses::getSampleId).toList(), layer + " examples");
                    for (int i = 0; i < examples.size(); i++) {
                        assertEquals(i < probes, examples.get(i).getProbe(), layer + " probe flag of " + examples.get(i).getSampleId());
                    }
                    checkLosses(layer + " unedited", model, null, null, answered.get("examples"), examples, -1);
                    CurvatureEdit edit = edits.get(layer);
                    CurvatureEdit.Coordinates coordinates = edit.coordinates(model.weight(layer)); // C once, every ρ a mask
                    int changed = 0;
                    for (int k = 0; k < rhos.length; k++) {
                        KeepMassMask mask = edit.select(rhos[k]);
                        assertEquals(c.getThresholds().get(k), mask.tau());
                        double[] edited = edit.apply(coordinates, mask);
                        changed += checkLosses(layer + " rho " + rhos[k], model, layer, edited, answered.get("examples"), examples, k);
                    }
                    assertTrue(changed > 0, layer + ": no candidate changed any loss, the comparison would be vacuous");
                }
                assertEquals(List.of("fc1", "fc2"), answeredLayers.stream().sorted().toList());
            } finally {
                py.destroyForcibly();
            }
        }
    }

    /** The last {@code capacity} distinct ids in order of their latest appearance. */
    static List<String> recentDistinct(JsonNode trained, int capacity) {
        LinkedHashSet<String> recent = new LinkedHashSet<>();
        trained.forEach(n -> {
            recent.remove(n.asText());
            recent.add(n.asText());
        });
        List<String> all = new ArrayList<>(recent);
        return all.subList(Math.max(0, all.size() - capacity), all.size());
    }

    /**
     * Compares loss and correct flag of every example with Java's forward pass (column k of the
     * edited results, or the unedited ones for k = -1); returns 1 if some loss moved by more than 1e-3.
     */
    static int checkLosses(String what, PyMlp model, String layer, double[] edited, JsonNode inputs, List<ExampleLosses> got, int k) {
        int compared = 0;
        boolean moved = false;
        for (ExampleLosses e : got) {
            JsonNode ex = inputs.get(e.getSampleId());
            double[] x = new double[ex.get("x").size()];
            for (int i = 0; i < x.length; i++) {
                x[i] = ex.get("x").get(i).asDouble();
            }
            int y = ex.get("y").asInt();
            double[] logits = model.forward(x, layer, edited);
            double loss = crossEntropy(logits, y);
            double pyLoss = k < 0 ? e.getLossNow() : e.getLossEdited().get(k);
            assertEquals(loss, pyLoss, LOSS_TOLERANCE * (1 + Math.abs(loss)), what + " loss of " + e.getSampleId());
            double now = crossEntropy(model.forward(x, null, null), y);
            moved |= Math.abs(loss - now) > 1e-3;
            int best = argmax(logits);
            if (margin(logits, best) > ARGMAX_MARGIN) {
                boolean pyCorrect = k < 0 ? e.getCorrectNow() : e.getCorrectEdited().get(k);
                assertEquals(best == y, pyCorrect, what + " correct flag of " + e.getSampleId());
                compared++;
            }
            if (k >= 0) {
                assertEquals(e.getLossEdited().size(), e.getCorrectEdited().size(), what);
            }
        }
        assertTrue(compared >= got.size() - 2, what + ": only " + compared + " correct flags were comparable");
        return moved ? 1 : 0;
    }

    static double margin(double[] v, int best) {
        double second = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < v.length; i++) {
            if (i != best) {
                second = Math.max(second, v[i]);
            }
        }
        return v[best] - second;
    }

    /** The eigenbasis as the service sends it: values and vectors rounded to float32. */
    static Eigenbasis asFloat32(Eigenbasis b) {
        double[] values = b.values();
        double[] vectors = b.vectors();
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) values[i];
        }
        for (int i = 0; i < vectors.length; i++) {
            vectors[i] = (float) vectors[i];
        }
        return new Eigenbasis(b.size(), values, vectors, b.rawMin(), b.precision());
    }

    /** An EditCandidate as the service builds it (SERVICE-CONTRACT §1), with the edit Java applies for it. */
    record Candidate(EditCandidate record, CurvatureEdit edit) {
        /** Eigenbases of a layer's factors (A, G), rounded to float32; thresholds for the standard grid. */
        static Candidate of(String run, String id, String layer, FactorAccumulator[] ag) {
            EigenbasisRefresh refresh = new EigenbasisRefresh(SymmetricEigensolvers.best(), 0.0, Precision.FLOAT64);
            Eigenbasis a = asFloat32(refresh.refresh(null, ag[0].mean(), ag[0].dim()).result().orThrow());
            Eigenbasis g = asFloat32(refresh.refresh(null, ag[1].mean(), ag[1].dim()).result().orThrow());
            CurvatureEdit edit = new CurvatureEdit(g, a);
            List<Double> rhos = new ArrayList<>();
            List<Double> taus = new ArrayList<>();
            for (double rho : STANDARD_RHOS) {
                rhos.add(rho);
                taus.add(edit.select(rho).tau());
            }
            return new Candidate(EditCandidate.newBuilder().setCandidateId(id).setRunId(run).setLayer(layer).setStep(5)
                    .setFactorVersion(1).setBasisG(floats(g.vectors(), g.size(), g.size()))
                    .setBasisA(floats(a.vectors(), a.size(), a.size())).setEigenvaluesG(floats(g.values(), g.size()))
                    .setEigenvaluesA(floats(a.values(), a.size())).setRhos(rhos).setThresholds(taus)
                    .setCreatedMs(System.currentTimeMillis()).build(), edit);
        }
    }

    /** Running A and G (float64) per layer over the non-probe captures among {@code records}. */
    static Map<String, FactorAccumulator[]> factorsOf(List<ConsumerRecord<String, byte[]>> records) {
        AvroDeserializer<Capture> decoder = new AvroDeserializer<>(Capture.class);
        return accumulate(records.stream().map(r -> decoder.decode(r.value())).toList());
    }

    /** Running A and G (float64) per layer over the non-probe captures, in order. */
    static Map<String, FactorAccumulator[]> accumulate(List<Capture> captures) {
        Map<String, FactorAccumulator[]> factors = new LinkedHashMap<>();
        for (Capture c : captures) {
            if (!c.getProbe()) {
                int tokens = c.getActivations().getShape().get(0);
                FactorAccumulator[] ag = factors.computeIfAbsent(c.getLayer(), l -> new FactorAccumulator[]{
                        FactorAccumulator.cumulative(c.getActivations().getShape().get(1), Precision.FLOAT64),
                        FactorAccumulator.cumulative(c.getGradients().getShape().get(1), Precision.FLOAT64)});
                ag[0].add(c.getStep(), TensorCodec.floats(c.getActivations(), "a"), tokens);
                ag[1].add(c.getStep(), TensorCodec.floats(c.getGradients(), "g"), tokens);
            }
        }
        return factors;
    }

    /** Publishes candidates to edit-candidates, keyed by their run, and waits for each acknowledgement. */
    static void send(LocalKafka kafka, List<EditCandidate> candidates) throws Exception {
        String topic = kafka.topics().editCandidates();
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES);
        AvroSerializer<EditCandidate> serializer = new AvroSerializer<>(EditCandidate.class);
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer())) {
            for (EditCandidate c : candidates) {
                producer.send(new ProducerRecord<>(topic, c.getRunId(), serializer.serialize(topic, c))).get();
            }
        }
    }

    static dev.curvewatch.avro.Tensor floats(double[] values, int... shape) {
        float[] f = new float[values.length];
        for (int i = 0; i < f.length; i++) {
            f[i] = (float) values[i];
        }
        return TensorCodec.ofFloats(f, shape);
    }

    /** tests/helpers.py's Mlp (fc1 Linear, fc2 Conv1D, out Linear, tanh between) in float64, weights d_out x d_in. */
    record PyMlp(Map<String, double[]> weights, Map<String, double[]> biases, Map<String, int[]> dims) {
        static PyMlp of(JsonNode parameters) {
            Map<String, double[]> w = new HashMap<>();
            Map<String, double[]> b = new HashMap<>();
            Map<String, int[]> dims = new HashMap<>();
            for (String layer : List.of("fc1", "fc2", "out")) {
                JsonNode weight = parameters.get(layer + ".weight");
                int rows = weight.get("shape").get(0).asInt();
                int cols = weight.get("shape").get(1).asInt();
                boolean conv1d = layer.equals("fc2");  // Conv1D stores d_in x d_out
                int dOut = conv1d ? cols : rows;
                int dIn = conv1d ? rows : cols;
                double[] outIn = new double[dOut * dIn];
                for (int r = 0; r < rows; r++) {
                    for (int c = 0; c < cols; c++) {
                        double v = weight.get("data").get(r * cols + c).asDouble();
                        outIn[conv1d ? c * dIn + r : r * dIn + c] = v;
                    }
                }
                double[] bias = new double[dOut];
                for (int i = 0; i < dOut; i++) {
                    bias[i] = parameters.get(layer + ".bias").get("data").get(i).asDouble();
                }
                w.put(layer, outIn);
                b.put(layer, bias);
                dims.put(layer, new int[]{dOut, dIn});
            }
            return new PyMlp(w, b, dims);
        }

        double[] weight(String layer) {
            return weights.get(layer).clone();
        }

        /** Logits, with {@code edited} (d_out x d_in) in place of {@code layer}'s weight when given. */
        double[] forward(double[] x, String layer, double[] edited) {
            double[] h = x;
            for (String name : List.of("fc1", "fc2", "out")) {
                double[] w = name.equals(layer) ? edited : weights.get(name);
                int dOut = dims.get(name)[0];
                int dIn = dims.get(name)[1];
                double[] next = new double[dOut];
                for (int o = 0; o < dOut; o++) {
                    double s = biases.get(name)[o];
                    for (int i = 0; i < dIn; i++) {
                        s += w[o * dIn + i] * h[i];
                    }
                    next[o] = name.equals("out") ? s : Math.tanh(s);
                }
                h = next;
            }
            return h;
        }
    }

    /** A child process's output lines, read on a thread so the test can wait for one with a deadline. */
    static final class ProcessLines {
        private static final String END = new String("<end of output>");
        private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
        private final StringBuffer log = new StringBuffer();

        ProcessLines(Process process) {
            Thread reader = new Thread(() -> {
                try (BufferedReader r = process.inputReader()) {
                    for (String line = r.readLine(); line != null; line = r.readLine()) {
                        log.append(line).append('\n');
                        lines.add(line);
                    }
                } catch (IOException e) {
                    log.append("(reading the output failed: ").append(e).append(")\n");
                } finally {
                    lines.add(END);
                }
            }, "python-output");
            reader.setDaemon(true);
            reader.start();
        }

        String log() {
            return log.toString();
        }

        /** The whole output once the process closed it (at most {@code timeout} more). */
        String awaitEnd(Duration timeout) throws InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            for (String line = ""; line != null && line != END; ) {
                line = lines.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            }
            return log();
        }

        /** The first line matching {@code wanted}; fails if the output ends or the timeout passes first. */
        String await(Predicate<String> wanted, Duration timeout) throws InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (true) {
                String line = lines.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                if (line == null) {
                    return fail("no expected line within " + timeout + ":\n" + log());
                }
                if (line == END) {
                    return fail("the process ended before the expected line:\n" + log());
                }
                if (wanted.test(line)) {
                    return line;
                }
            }
        }
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
