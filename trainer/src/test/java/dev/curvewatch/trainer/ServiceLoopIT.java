package dev.curvewatch.trainer;

import dev.curvewatch.trainer.experiments.Mlp;
import dev.curvewatch.trainer.experiments.NoisyLabelData;
import dev.curvewatch.trainer.experiments.WatchedTraining;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.schemas.TensorCodec;
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
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntPredicate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The trainer's side of the service loop on a real KRaft broker, with the test in the service's
 * place: it reads the run's captures, computes real eigenbases with curvature, publishes edit
 * candidates and snapshot events, and checks what comes back. Training runs on its own thread
 * "until stopped"; every wait is on a condition with a deadline.
 */
@Tag("integration")
class ServiceLoopIT {
    private static final Duration DEADLINE = Duration.ofSeconds(120);
    private static final int[] DIMS = {32, 32, 32, 10};
    private static final AvroSerializer<EditCandidate> CANDIDATES = new AvroSerializer<>(EditCandidate.class);
    private static final AvroSerializer<SnapshotEvent> EVENTS = new AvroSerializer<>(SnapshotEvent.class);
    private static final CurvewatchTopics TOPICS = CurvewatchTopics.withDefaultPrefix();

    @TempDir
    static Path dir;
    private static LocalKafka kafka;

    @BeforeAll
    static void broker() throws Exception {
        kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
    }

    @AfterAll
    static void stopBroker() {
        if (kafka != null) {
            kafka.close();
        }
    }

    /** What the observer saw at an answer: the model as it was measured and the labels in force. */
    private record Seen(ProbeResult result, float[][] weights, float[][] biases, int[] labels) {
    }

    /** Training on a thread of its own, with the observer's events in thread-safe holders. */
    private static final class Run implements WatchedTraining.Observer, WatchedTraining.Listener {
        final BlockingQueue<Seen> answers = new LinkedBlockingQueue<>();
        final BlockingQueue<float[][]> applied = new LinkedBlockingQueue<>();
        final List<SnapshotFollower.Applied> applications = new ArrayList<>();
        final Map<String, String> refusals = new ConcurrentHashMap<>();
        final Semaphore refused = new Semaphore(0);
        final List<String> skipped = java.util.Collections.synchronizedList(new ArrayList<>());
        final AtomicInteger epochs = new AtomicInteger();
        final Object epochMonitor = new Object();
        final WatchedTraining training;
        final ExecutorService thread = Executors.newSingleThreadExecutor();
        Future<Map<String, Object>> result;

        Run(WatchedTraining.Config c) {
            training = new WatchedTraining(c, System.out, this).observe(this);
        }

        Run start() {
            result = thread.submit(training::run);
            return this;
        }

        @Override
        public void onEpoch(WatchedTraining.EpochProgress p) {
            synchronized (epochMonitor) {
                epochs.set(p.epoch());
                epochMonitor.notifyAll();
            }
        }

        @Override
        public void candidateAnswered(EditCandidate candidate, ProbeResult result, Mlp model, int[] trainLabels) {
            answers.add(new Seen(result, model.copyWeights(), new float[][] {model.bias(0).clone(), model.bias(1).clone(),
                    model.bias(2).clone()}, trainLabels.clone()));
        }

        @Override
        public void candidateSkipped(EditCandidate candidate, String why) {
            skipped.add(candidate.getCandidateId());
        }

        @Override
        public void candidateRefused(String candidateId, String reason, String message) {
            refusals.put(candidateId, reason + " | " + message);
            refused.release();
        }

        @Override
        public void snapshotApplied(SnapshotFollower.Applied a, Mlp model) {
            synchronized (applications) {
                applications.add(a);
            }
            applied.add(new float[][] {model.weight(1).clone(), model.bias(1).clone()});
        }

        @Override
        public void snapshotRefused(String snapshotId, String reason, String message) {
            refusals.put(snapshotId, reason + " | " + message);
            refused.release();
        }

        /** Waits until {@code test} holds for the number of finished epochs (or the run ends). */
        void awaitEpoch(IntPredicate test, String what) throws InterruptedException {
            long end = System.nanoTime() + DEADLINE.toNanos();
            synchronized (epochMonitor) {
                while (!test.test(epochs.get())) {
                    long left = end - System.nanoTime();
                    assertTrue(left > 0 && !result.isDone(), "timed out waiting for " + what + " (epoch " + epochs.get() + ")");
                    TimeUnit.NANOSECONDS.timedWait(epochMonitor, Math.min(left, TimeUnit.SECONDS.toNanos(1)));
                }
            }
        }

        Seen nextAnswer(String what) throws InterruptedException {
            Seen s = answers.poll(DEADLINE.toSeconds(), TimeUnit.SECONDS);
            assertNotNull(s, "timed out waiting for " + what);
            return s;
        }

        void awaitRefusals(int n, String what) throws InterruptedException {
            assertTrue(refused.tryAcquire(n, DEADLINE.toSeconds(), TimeUnit.SECONDS), "timed out waiting for " + what
                    + "; refusals so far: " + refusals);
        }

        Map<String, Object> stop() throws Exception {
            training.stop();
            Map<String, Object> summary = result.get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
            thread.shutdown();
            return summary;
        }
    }

    @Test
    void answersEditCandidatesFromRealFactorsAndRefusesMalformedOnes() throws Exception {
        String run = "it-answers";
        // clean labels for 2 epochs, then the flipped ones; 20 tokens a step keep the topic small while it runs
        WatchedTraining.Config c = new WatchedTraining.Config(run, 5, 0.1, 32, 5000, 100, 1e-3f, 0, 0, true, 20,
                kafka.bootstrapServers(), CapturePublisher.Policy.BLOCK, 16 << 20, null, null, null).withNoiseInjectedAt(2);
        NoisyLabelData data = WatchedTraining.data(c);
        Run r = new Run(c).start();
        r.awaitEpoch(e -> e >= 3, "an epoch on the flipped labels");

        // the service's part: factors from the run's published captures (steps 0-39), eigenbases with curvature
        Map<String, Candidates.Bases> bases = factorsFromCaptures(run, 40);
        double[] rhos = Candidates.standardRhos();
        List<ProducerRecord<String, byte[]>> batch = new ArrayList<>();
        batch.add(candidate(run, Candidates.builder("fc2-old", run, "fc2", 1, bases.get("fc2"), rhos)));
        batch.add(candidate(run, Candidates.builder("fc2-new", run, "fc2", 2, bases.get("fc2"), rhos)));
        batch.add(candidate(run, Candidates.builder("fc1-new", run, "fc1", 2, bases.get("fc1"), rhos)));
        // malformed ones, one per class; none may stop training or be answered
        batch.add(candidate(run, Candidates.builder("bad-shape", run, "fc2", 3, bases.get("fc2"), rhos)
                .setBasisA(TensorCodec.ofFloats(new float[31 * 32], 31, 32))));
        batch.add(candidate(run, Candidates.builder("bad-nan", run, "fc1", 3, bases.get("fc1"), rhos)
                .setEigenvaluesA(withNaN(bases.get("fc1").mu()))));
        batch.add(candidate(run, Candidates.builder("bad-basis", run, "fc2", 3, bases.get("fc2"), rhos)
                .setBasisG(TensorCodec.ofFloats(scaled(bases.get("fc2").ug(), 1.1), 32, 32))));
        batch.add(candidate(run, Candidates.builder("bad-layer", run, "fc3", 3, bases.get("fc2"), rhos)));
        batch.add(candidate(run, Candidates.builder("bad-run", "not-" + run, "fc2", 3, bases.get("fc2"), rhos)));
        double[] wrongTaus = Candidates.thresholds(bases.get("fc2"), rhos);
        wrongTaus[3] *= 1.5;
        batch.add(candidate(run, Candidates.builder("bad-tau", run, "fc2", 3, bases.get("fc2"), rhos, wrongTaus)));
        // another run's candidate on the shared topic is not ours
        batch.add(new ProducerRecord<>(TOPICS.editCandidates(), "another-run",
                CANDIDATES.serialize("t", Candidates.builder("x", "another-run", "fc2", 1, bases.get("fc2"), rhos).build())));
        publishAsOneBatch(batch);

        Map<String, Seen> seen = new HashMap<>();
        for (int i = 0; i < 2; i++) {
            Seen s = r.nextAnswer("answer " + (i + 1) + " of 2");
            seen.put(s.result().getCandidateId(), s);
        }
        assertEquals(Set.of("fc2-new", "fc1-new"), seen.keySet(), "the newest of fc2 and the one of fc1");
        r.awaitRefusals(6, "six refusals");
        assertEquals(Map.of("bad-shape", "SHAPE_MISMATCH", "bad-nan", "NON_FINITE", "bad-basis", "NOT_ORTHONORMAL",
                        "bad-layer", "UNKNOWN_LAYER", "bad-run", "KEY_MISMATCH", "bad-tau", "THRESHOLD_MISMATCH"),
                reasons(r.refusals));
        assertEquals(List.of("fc2-old"), r.skipped);

        // second round: a rho = 1 candidate (keeps every pair) and a repeat of an answered id
        publishAsOneBatch(List.of(candidate(run, Candidates.builder("fc2-new", run, "fc2", 2, bases.get("fc2"), rhos)),
                candidate(run, Candidates.builder("fc2-rho1", run, "fc2", 4, bases.get("fc2"), new double[] {1.0}))));
        Seen one = r.nextAnswer("the rho = 1 answer");
        seen.put(one.result().getCandidateId(), one);
        assertEquals("fc2-rho1", one.result().getCandidateId());
        int afterAnswers = r.epochs.get();
        r.awaitEpoch(e -> e >= afterAnswers + 2, "training to go on after the answers");
        Map<String, Object> summary = r.stop();

        assertEquals(3L, summary.get("candidates_answered"));
        assertEquals(1L, summary.get("candidates_skipped"));
        assertEquals(6L, summary.get("candidates_refused"));
        assertEquals(1L, summary.get("candidates_duplicate"));
        assertEquals(1L, summary.get("candidates_other_runs"));
        assertEquals(0L, summary.get("dropped_probe_results"));
        assertEquals(0L, summary.get("failed_records"));
        assertEquals(true, summary.get("stopped_early"));
        assertEquals(40L, summary.get("noise_injected_at_step"));
        assertTrue((Long) summary.get("steps") > one.result().getStep() + 20, "training went on after the last answer");

        // what reached the topic: one ProbeResult per answered candidate, nothing else
        List<ConsumerRecord<String, byte[]>> records = readToEnd(TOPICS.probeResults());
        AvroDeserializer<ProbeResult> de = new AvroDeserializer<>(ProbeResult.class);
        Map<String, ProbeResult> onTopic = new HashMap<>();
        for (ConsumerRecord<String, byte[]> rec : records) {
            assertEquals(run, rec.key());
            ProbeResult p = de.decode(rec.value());
            assertTrue(onTopic.put(p.getCandidateId(), p) == null, "one answer per candidate: " + p.getCandidateId());
        }
        assertEquals(Set.of("fc2-new", "fc1-new", "fc2-rho1"), onTopic.keySet());
        for (Map.Entry<String, ProbeResult> e : onTopic.entrySet()) {
            ProbeResult p = e.getValue();
            Seen s = seen.get(e.getKey());
            assertEquals(s.result(), p, "the published record is the one computed");
            assertEquals(run, p.getRunId());
            assertEquals(500, p.getExamples().stream().filter(ExampleLosses::getProbe).count(), "every held-out probe");
            assertEquals(512, p.getExamples().stream().filter(x -> !x.getProbe()).count(), "512 recent training examples");
            Set<String> ids = new HashSet<>();
            p.getExamples().forEach(x -> ids.add(x.getSampleId()));
            assertEquals(1012, ids.size());
            assertArrayEquals(data.trainLabels(), s.labels(), "answered after the injection: the flipped labels");
        }
        for (String id : List.of("fc2-new", "fc1-new")) {
            ProbeResult p = onTopic.get(id);
            Seen s = seen.get(id);
            assertEquals(Candidates.list(rhos), p.getRhos());
            int layer = p.getLayer().equals("fc1") ? 0 : 1;
            int changed = ProbeResultCheck.check(p, s.weights(), s.biases(), DIMS, data, layer, bases.get(p.getLayer()),
                    Candidates.thresholds(bases.get(p.getLayer()), rhos), s.labels());
            assertTrue(changed > 0, id + ": some edit moved some loss");
            long flippedScored = p.getExamples().stream().filter(x -> !x.getProbe())
                    .filter(x -> data.flipped()[Integer.parseInt(x.getSampleId().substring(6))]).count();
            assertTrue(flippedScored > 0, id + " scores flipped examples with their flipped labels");
        }
        for (ExampleLosses x : onTopic.get("fc2-rho1").getExamples()) {
            assertEquals(x.getLossNow(), x.getLossEdited().get(0), "rho = 1 changes nothing, exactly: " + x.getSampleId());
            assertEquals(x.getCorrectNow(), x.getCorrectEdited().get(0), x.getSampleId());
        }
    }

    @Test
    void appliesAGoodEditedSnapshotAndRefusesBadOnes() throws Exception {
        String run = "it-snapshots";
        Path store = Files.createDirectories(dir.resolve("store"));
        Path outside = Files.createDirectories(dir.resolve("outside"));
        WatchedTraining.Config c = new WatchedTraining.Config(run, 6, 0.1, 32, 5000, 100, 1e-3f, 1, 0, false, 10,
                kafka.bootstrapServers(), CapturePublisher.Policy.BLOCK, 16 << 20, null, null, null)
                .answeringCandidates(false).followingSnapshots(store, true);
        Run r = new Run(c).start();
        r.awaitEpoch(e -> e >= 1, "the first epoch");

        float[] w = Snapshots.values(32 * 32, 11);
        float[] b = Snapshots.values(32, 12);
        Map<String, long[]> shape = Map.of("fc2", new long[] {32, 32});
        // every file is named after its event's snapshot id: the uri is exactly <run>/<snapshot id>.safetensors
        Path good = store.resolve(run).resolve("good.safetensors");
        Snapshots.write(good, run, Map.of("fc2", new float[][] {w, b}), shape);
        Path badSha = store.resolve(run).resolve("bad-sha.safetensors");
        Snapshots.write(badSha, run, Map.of("fc2", new float[][] {w, b}), shape);
        Path out = outside.resolve("elsewhere.safetensors");
        Snapshots.write(out, run, Map.of("fc2", new float[][] {w, b}), shape);
        Path wrong = store.resolve(run).resolve("bad-shape.safetensors");
        Snapshots.write(wrong, run, Map.of("fc2", new float[][] {new float[16 * 32]}), Map.of("fc2", new long[] {16, 32}));
        Files.createSymbolicLink(store.resolve(run).resolve("bad-link.safetensors"), out);
        SnapshotEvent goodEvent = Snapshots.event("good", run, run + "/good.safetensors", good, "fc2").build();
        List<SnapshotEvent> events = List.of(
                Snapshots.event("bad-sha", run, run + "/bad-sha.safetensors", badSha, "fc2").setSha256("0".repeat(64)).build(),
                Snapshots.event("bad-dotdot", run, "../outside/elsewhere.safetensors", out, "fc2").build(),
                Snapshots.event("bad-absolute", run, out.toString(), out, "fc2").build(),
                Snapshots.event("bad-link", run, run + "/bad-link.safetensors", out, "fc2").build(),
                Snapshots.event("bad-shape", run, run + "/bad-shape.safetensors", wrong, "fc2").build(),
                goodEvent,
                goodEvent); // sent again (a retry): applied once
        List<ProducerRecord<String, byte[]>> batch = new ArrayList<>();
        for (SnapshotEvent e : events) {
            batch.add(new ProducerRecord<>(TOPICS.snapshots(), run, EVENTS.serialize("t", e)));
        }
        publishAsOneBatch(batch);

        float[][] after = r.applied.poll(DEADLINE.toSeconds(), TimeUnit.SECONDS);
        assertNotNull(after, "the good snapshot was applied");
        assertArrayEquals(w, after[0], "fc2.weight is the file's");
        assertArrayEquals(b, after[1], "fc2.bias is the file's");
        r.awaitRefusals(5, "five refused snapshots");
        Map<String, String> reasons = reasons(r.refusals);
        assertEquals(Map.of("bad-sha", "sha256", "bad-dotdot", "path", "bad-absolute", "path", "bad-link", "path",
                "bad-shape", "shape"), reasons);
        assertTrue(r.refusals.get("bad-sha").contains("the event says " + "0".repeat(64)), r.refusals.get("bad-sha"));
        assertTrue(r.refusals.get("bad-dotdot").contains("is not <run_id>/<snapshot_id>.safetensors"), r.refusals.get("bad-dotdot"));
        assertTrue(r.refusals.get("bad-absolute").contains("is not <run_id>/<snapshot_id>.safetensors"), r.refusals.get("bad-absolute"));
        assertTrue(r.refusals.get("bad-link").contains("outside the snapshot store"), r.refusals.get("bad-link"));
        assertTrue(r.refusals.get("bad-shape").contains("[16, 32]"), r.refusals.get("bad-shape"));
        long at;
        synchronized (r.applications) {
            assertEquals(1, r.applications.size());
            at = r.applications.get(0).atStep();
        }
        int epochAtApply = r.epochs.get();
        r.awaitEpoch(e -> e >= epochAtApply + 2, "training to go on from the edited weights");
        Map<String, Object> summary = r.stop();
        assertEquals(1L, summary.get("snapshots_applied"));
        assertEquals(1L, summary.get("snapshots_duplicate"), "the repeated good event");
        assertEquals(5L, summary.get("snapshots_refused"));
        assertEquals(Map.of("path", 3L, "sha256", 1L, "shape", 1L), summary.get("snapshot_refusal_reasons"));
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> list = (List<Map<String, Object>>) summary.get("snapshot_applications");
        assertEquals("good", list.get(0).get("snapshot_id"));
        assertEquals(at, list.get(0).get("applied_after_step"));
        assertTrue((Long) summary.get("steps") > at + 20);

        // the weights published after the application continue from the file's: one Adam step away from
        // them, while the weights published just before were the trained ones, far from them
        Map<Long, float[]> fc2 = new HashMap<>();
        AvroDeserializer<WeightSnapshot> wd = new AvroDeserializer<>(WeightSnapshot.class);
        for (ConsumerRecord<String, byte[]> rec : readToEnd(TOPICS.weights())) {
            if (rec.key().equals(run + "/fc2")) {
                WeightSnapshot s = wd.decode(rec.value());
                fc2.put(s.getStep(), TensorCodec.toFloatArray(s.getWeight(), "weight"));
            }
        }
        assertTrue(maxAbsDiff(fc2.get(at), w) > 0.5, "before: the trained weights");
        double next = maxAbsDiff(fc2.get(at + 1), w);
        assertTrue(next > 0 && next < 0.01, "after one more step: the file's weights moved by one Adam step, " + next);
    }

    private static double maxAbsDiff(float[] a, float[] b) {
        assertNotNull(a);
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    private static Map<String, String> reasons(Map<String, String> refusals) {
        Map<String, String> out = new HashMap<>();
        refusals.forEach((id, v) -> out.put(id, v.substring(0, v.indexOf(" | "))));
        return out;
    }

    private static ProducerRecord<String, byte[]> candidate(String run, EditCandidate.Builder b) {
        return new ProducerRecord<>(TOPICS.editCandidates(), run, CANDIDATES.serialize("t", b.build()));
    }

    private static dev.curvewatch.avro.Tensor withNaN(double[] mu) {
        float[] v = Candidates.narrow(mu);
        v[mu.length / 2] = Float.NaN;
        return TensorCodec.ofFloats(v, v.length);
    }

    private static float[] scaled(double[] u, double by) {
        float[] v = Candidates.narrow(u);
        for (int i = 0; i < v.length; i++) {
            v[i] *= (float) by;
        }
        return v;
    }

    /**
     * Sends the records so that they reach the broker together: nothing leaves before flush()
     * (linger of a minute), and flush() sends them as one batch per partition, which the trainer's
     * consumer receives in one poll.
     */
    private static void publishAsOneBatch(List<ProducerRecord<String, byte[]>> records) {
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "60000");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, String.valueOf(4 << 20));
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, String.valueOf(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer())) {
            List<Future<?>> sent = new ArrayList<>();
            for (ProducerRecord<String, byte[]> r : records) {
                sent.add(producer.send(r));
            }
            producer.flush();
            for (Future<?> f : sent) {
                try {
                    f.get(30, TimeUnit.SECONDS);
                } catch (Exception e) {
                    throw new AssertionError("publishing failed: " + e, e);
                }
            }
        }
    }

    /** Sampled-Fisher factors of fc1 and fc2 from the run's captures of steps [0, steps). */
    private static Map<String, Candidates.Bases> factorsFromCaptures(String run, int steps) {
        Map<String, FactorAccumulator[]> acc = new HashMap<>();
        Set<String> have = new HashSet<>();
        AvroDeserializer<Capture> de = new AvroDeserializer<>(Capture.class);
        try (KafkaConsumer<String, byte[]> consumer = consumer()) {
            List<TopicPartition> parts = partitions(consumer, TOPICS.captures());
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            long end = System.nanoTime() + DEADLINE.toNanos();
            while (have.size() < 2 * steps) {
                assertTrue(System.nanoTime() < end, "timed out reading captures: have " + have.size());
                for (ConsumerRecord<String, byte[]> rec : consumer.poll(Duration.ofMillis(500))) {
                    if (rec.key() == null || !rec.key().startsWith(run + "/")) {
                        continue;
                    }
                    Capture cap = de.decode(rec.value());
                    if (cap.getProbe() || cap.getStep() >= steps || !have.add(cap.getLayer() + "@" + cap.getStep())) {
                        continue;
                    }
                    assertEquals(FisherKind.SAMPLED, cap.getFisher());
                    int tokens = cap.getActivations().getShape().get(0);
                    FactorAccumulator[] ag = acc.computeIfAbsent(cap.getLayer(), k -> new FactorAccumulator[] {
                            FactorAccumulator.cumulative(cap.getActivations().getShape().get(1), Precision.FLOAT64),
                            FactorAccumulator.cumulative(cap.getGradients().getShape().get(1), Precision.FLOAT64)});
                    ag[0].add(cap.getStep(), TensorCodec.toFloatArray(cap.getActivations(), "a"), tokens);
                    ag[1].add(cap.getStep(), TensorCodec.toFloatArray(cap.getGradients(), "g"), tokens);
                }
            }
        }
        Map<String, Candidates.Bases> out = new HashMap<>();
        acc.forEach((layer, ag) -> out.put(layer, Candidates.bases(ag[0], ag[1])));
        return out;
    }

    /** Every record of a topic, up to the end offsets as they are now. */
    private static List<ConsumerRecord<String, byte[]>> readToEnd(String topic) {
        List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> consumer = consumer()) {
            List<TopicPartition> parts = partitions(consumer, topic);
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            Map<TopicPartition, Long> ends = consumer.endOffsets(parts);
            long deadline = System.nanoTime() + DEADLINE.toNanos();
            while (parts.stream().anyMatch(tp -> consumer.position(tp) < ends.get(tp))) {
                assertTrue(System.nanoTime() < deadline, "timed out reading " + topic);
                consumer.poll(Duration.ofMillis(500)).forEach(out::add);
            }
        }
        return out;
    }

    private static List<TopicPartition> partitions(KafkaConsumer<String, byte[]> consumer, String topic) {
        List<TopicPartition> parts = new ArrayList<>();
        consumer.partitionsFor(topic).forEach(pi -> parts.add(new TopicPartition(topic, pi.partition())));
        return parts;
    }

    private static KafkaConsumer<String, byte[]> consumer() {
        Properties p = KafkaClientSettings.forBootstrap(kafka.bootstrapServers());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, String.valueOf(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        return new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
    }
}
