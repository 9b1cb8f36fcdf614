package dev.curvewatch.it;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.ServiceLayerState;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.contracts.CheckpointCodec;
import dev.curvewatch.it.bench.ChildJvm;
import dev.curvewatch.it.bench.SyntheticCaptures;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TensorCodec;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;
import org.apache.avro.specific.SpecificRecord;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A serialized feed through broker(s), a worker and service instances (each a JVM of its own, shipped
 * service defaults) that two runs of which can be compared: one capture per run and version, the next
 * only once every run's calibration of the previous one is published, so every run sees the same factor
 * versions; a trainer's part that answers every candidate (widening the memorization gap of versions 4-5,
 * so the shipped gap rules fire and resolve) and can hold the answers of one version; edit requests at
 * versions 2 and {@code KILL_AT + 2}. A {@link Disruption} acts after each version's captures are sent.
 * The worker checkpoints every second (not its 10 s default) only to keep the tests short.
 */
final class PipelineFeed {
    static final String LAYER = "mlp";
    static final int D_IN = 24;
    static final int D_OUT = 16;
    static final int TOKENS = 48;
    static final int VERSIONS = 7;
    /** The version at which the disruptions of the tests happen. */
    static final int KILL_AT = 4;
    static final long STEPS_PER_VERSION = 200; // calibration.max.steps: every refresh sends a candidate
    static final List<String> COMPARED = List.of("effective_rank_g", "effective_rank_a", "calibrated_rho",
            "memorization_gap", "calibration_valid", "kept_pairs");
    /** Generous: at a load average of 50 here a service JVM took 88 s to listen. */
    static final Duration VERSION_WAIT = Duration.ofSeconds(180);

    private PipelineFeed() {
    }

    /** What one run of the feed left on Kafka; {@code factors}: the sha256 of each run's last factor checkpoint. */
    record Outcome(Map<String, Double> signals, Map<String, Integer> signalCounts, Set<String> alerts,
                   Map<String, Integer> snapshots, Map<String, Set<String>> publishers, Map<String, String> factors,
                   double takeoverSeconds) {
    }

    /** What a test does to the system while the feed runs. */
    interface Disruption {
        /**
         * Called after the captures of version {@code v} are sent (the answers of version {@code holdAt} held).
         *
         * @return seconds from a kill to the first signal of a run taken over, or 0
         */
        double after(int v, long step, Watch watch, List<ChildJvm> services, List<String> runs) throws Exception;
    }

    /** Run ids whose edit-request partitions differ, so that instances own distinct runs. */
    static List<String> runsOnDistinctPartitions(int count, int partitions) {
        Map<Integer, String> byPartition = new TreeMap<>();
        for (int i = 0; byPartition.size() < count; i++) {
            String id = "ha-run-" + i;
            byPartition.putIfAbsent(Utils.toPositive(Utils.murmur2(id.getBytes(StandardCharsets.UTF_8))) % partitions, id);
        }
        return new ArrayList<>(byPartition.values());
    }

    static void deleteTree(Path dir) throws IOException {
        if (java.nio.file.Files.exists(dir)) {
            try (var paths = java.nio.file.Files.walk(dir)) {
                for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    java.nio.file.Files.delete(p);
                }
            }
        }
    }

    static Outcome run(String bs, CurvewatchTopics topics, Path dir, List<String> runs, int instances, int holdAt, Disruption disruption)
            throws Exception {
        int workerPort = freePort();
        List<ChildJvm> services = new ArrayList<>();
        Properties pp = new Properties();
        pp.setProperty("bootstrap.servers", bs);
        pp.setProperty("acks", "all");
        Properties cp = new Properties();
        cp.setProperty("bootstrap.servers", bs);
        cp.setProperty("isolation.level", "read_committed");
        try (ChildJvm worker = ChildJvm.start("worker", "512m", dirs(dir), "dev.curvewatch.workers.WorkerMain",
                List.of("bootstrap=" + bs, "instance.id=it-worker", "metrics.port=" + workerPort, "checkpoint.interval.ms=1000"));
             KafkaProducer<String, byte[]> producer = new KafkaProducer<>(pp, new StringSerializer(), new ByteArraySerializer());
             KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<Integer> ports = new ArrayList<>();
            for (int i = 0; i < instances; i++) { // started together, as a deployment's replicas are
                int port = freePort();
                ports.add(port);
                services.add(ChildJvm.start("service-" + i, "512m", dir, "dev.curvewatch.cli.Curvewatch",
                        List.of("service", "--bootstrap", bs, "--http-port", Integer.toString(port), "--snapshot-dir",
                                dir.resolve("snapshots").toString(), "--set", "instance.id=it-service-" + i)));
            }
            for (int i = 0; i < instances; i++) {
                services.get(i).awaitHttpOk("http://127.0.0.1:" + ports.get(i) + "/health", Duration.ofMinutes(5));
            }
            worker.awaitHttpOk("http://127.0.0.1:" + workerPort + "/health", Duration.ofMinutes(5));
            Watch watch = new Watch(consumer, producer, topics);
            Map<String, SyntheticCaptures> captures = new HashMap<>();
            for (int r = 0; r < runs.size(); r++) {
                String run = runs.get(r);
                captures.put(run, new SyntheticCaptures(D_IN, D_OUT, TOKENS, 31 + r));
                send(producer, topics.runs(), run, RunInfo.newBuilder().setRunId(run).setModel("it").setCreatedMs(1)
                        .setLayers(List.of(LayerInfo.newBuilder().setName(LAYER).setDIn(D_IN).setDOut(D_OUT).build())).build());
                send(producer, topics.weights(), run + "/" + LAYER, weight(run, r));
            }
            double takeover = 0;
            for (int v = 1; v <= VERSIONS; v++) {
                long step = v * STEPS_PER_VERSION;
                watch.holdStep = v == holdAt ? step : -1;
                for (String run : runs) {
                    send(producer, topics.captures(), run + "/" + LAYER, captures.get(run).next(run, LAYER, step));
                }
                if (v == 2) {
                    runs.forEach(run -> edit(producer, topics, run, "before"));
                }
                if (v == KILL_AT + 2) { // after the takeover: one request answered already (by the killed one), one new
                    runs.forEach(run -> edit(producer, topics, run, "before"));
                    runs.forEach(run -> edit(producer, topics, run, "after"));
                }
                double t = disruption.after(v, step, watch, services, runs);
                takeover = t > 0 ? t : takeover;
                long s = step;
                watch.await(() -> runs.stream().allMatch(run -> watch.calibrated(run, s)), VERSION_WAIT, "calibrations of step " + step);
            }
            watch.await(() -> watch.snapshots.values().stream().mapToInt(Integer::intValue).sum() >= 2L * runs.size(),
                    VERSION_WAIT, "snapshots");
            watch.drain(Duration.ofSeconds(3)); // late duplicates, if any, would show here
            return new Outcome(watch.signals, watch.signalCounts, watch.alerts, watch.snapshots, watch.publishers, watch.factors, takeover);
        } finally {
            for (ChildJvm s : services) {
                s.close();
            }
        }
    }

    private static Path dirs(Path dir) throws IOException {
        java.nio.file.Files.createDirectories(dir);
        return dir;
    }

    /** Reads what the services publish, and answers their candidates as a trainer would (holding those of one step on demand). */
    static final class Watch {
        final KafkaConsumer<byte[], byte[]> consumer;
        final KafkaProducer<String, byte[]> producer;
        final CurvewatchTopics topics;
        final Map<String, Double> signals = new TreeMap<>();
        final Map<String, Integer> signalCounts = new TreeMap<>();
        final Map<String, Set<String>> publishers = new TreeMap<>();
        final Map<String, String> lastPublisher = new HashMap<>();
        final Map<String, Long> calibratedSteps = new HashMap<>();
        final Map<String, Long> firstSignalMs = new HashMap<>();
        final Set<String> alerts = new TreeSet<>();
        final Map<String, Integer> snapshots = new TreeMap<>();
        final Map<String, String> held = new HashMap<>();
        final List<ProbeResult> heldAnswers = new ArrayList<>();
        final Map<String, String> outstandingOnKafka = new HashMap<>();
        final Map<String, String> factors = new TreeMap<>();
        long holdStep = -1;

        Watch(KafkaConsumer<byte[], byte[]> consumer, KafkaProducer<String, byte[]> producer, CurvewatchTopics topics) {
            this.consumer = consumer;
            this.producer = producer;
            this.topics = topics;
            List<TopicPartition> parts = new ArrayList<>();
            for (String t : List.of(topics.signals(), topics.alertsRaw(), topics.snapshots(), topics.editCandidates(), topics.serviceState(),
                    topics.factors())) {
                consumer.partitionsFor(t).forEach(pi -> parts.add(new TopicPartition(t, pi.partition())));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
        }

        void await(BooleanSupplier done, Duration timeout, String what) {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (!done.getAsBoolean()) {
                assertTrue(System.nanoTime() < deadline, "waited " + timeout + " for " + what + "; calibrated " + calibratedSteps);
                poll();
            }
        }

        void drain(Duration d) {
            long end = System.nanoTime() + d.toNanos();
            while (System.nanoTime() < end) {
                poll();
            }
        }

        boolean calibrated(String run, long step) {
            return calibratedSteps.getOrDefault(run, -1L) >= step;
        }

        boolean recorded(String run, String candidateId) {
            return candidateId.equals(outstandingOnKafka.get(run));
        }

        String publisherOf(String run) {
            String p = lastPublisher.get(run);
            return p == null ? "" : p.substring(0, p.indexOf('#'));
        }

        long firstSignalAfter(Set<String> runs, long t) {
            return firstSignalMs.entrySet().stream().filter(e -> runs.contains(e.getKey().substring(0, e.getKey().indexOf('|')))
                    && e.getValue() >= t).mapToLong(Map.Entry::getValue).min().orElse(t);
        }

        void releaseHeld() {
            heldAnswers.forEach(a -> send(producer, topics.probeResults(), a.getRunId(), a));
            heldAnswers.clear();
            holdStep = -1;
        }

        private void poll() {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                String t = r.topic();
                if (t.equals(topics.signals())) {
                    Signal s = decode(Signal.class, r.value());
                    Header h = r.headers().lastHeader("curvewatch-origin");
                    String origin = h == null ? "?" : new String(h.value(), StandardCharsets.UTF_8);
                    lastPublisher.put(s.getRunId(), origin);
                    publishers.computeIfAbsent(s.getRunId(), x -> new TreeSet<>()).add(origin.substring(0, origin.indexOf('#')));
                    firstSignalMs.merge(s.getRunId() + "|" + origin, r.timestamp(), Math::min);
                    if (COMPARED.contains(s.getName())) {
                        String key = s.getRunId() + " " + s.getName() + " v" + s.getFactorVersion();
                        signals.put(key, s.getValue());
                        signalCounts.merge(key, 1, Integer::sum);
                    }
                    if (s.getName().equals("calibration_valid")) {
                        calibratedSteps.merge(s.getRunId(), s.getStep(), Math::max);
                    }
                } else if (t.equals(topics.alertsRaw())) {
                    Alert a = decode(Alert.class, r.value());
                    alerts.add(a.getRunId() + " " + a.getRule() + " " + a.getStatus() + " step " + a.getStep());
                } else if (t.equals(topics.snapshots())) {
                    SnapshotEvent e = decode(SnapshotEvent.class, r.value());
                    snapshots.merge(e.getRunId() + " " + e.getIdempotencyKey() + " " + e.getStatus(), 1, Integer::sum);
                } else if (t.equals(topics.factors())) {
                    String key = r.key() == null ? "" : new String(r.key(), StandardCharsets.UTF_8);
                    if (r.value() != null && key.equals(CheckpointCodec.manifestKey(CheckpointCodec.runLayerOf(key)))) {
                        FactorManifest m = decode(FactorManifest.class, r.value());
                        factors.put(m.getRunId(), "v" + m.getVersion() + " " + m.getTokenCount() + " tokens sha256 " + m.getSha256());
                    }
                } else if (t.equals(topics.serviceState())) {
                    ServiceLayerState st = decode(ServiceLayerState.class, r.value());
                    outstandingOnKafka.put(st.getRunId(), st.getCandidate() == null ? null : st.getCandidate().getCandidateId());
                } else if (t.equals(topics.editCandidates())) {
                    EditCandidate c = decode(EditCandidate.class, r.value());
                    assertEquals(1, c.getParts(), "a small layer's candidate travels whole");
                    ProbeResult answer = answer(c);
                    if (c.getStep() == holdStep) {
                        held.put(c.getRunId(), c.getCandidateId());
                        heldAnswers.add(answer);
                    } else {
                        send(producer, topics.probeResults(), c.getRunId(), answer);
                    }
                }
            }
        }
    }

    /**
     * Probe accuracy 1 from candidate 10 on, lower under the more aggressive ones; training
     * examples lose more than probes under the edit, by a margin ten times larger at versions 4-5
     * (the memorization gap jumps, then falls back).
     */
    private static ProbeResult answer(EditCandidate c) {
        int n = c.getRhos().size();
        long version = c.getStep() / STEPS_PER_VERSION;
        float margin = version == 4 || version == 5 ? 0.2f : 0.02f;
        List<ExampleLosses> examples = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            boolean probe = i < 100;
            List<Float> losses = new ArrayList<>(n);
            List<Boolean> correct = new ArrayList<>(n);
            for (int k = 0; k < n; k++) {
                int harm = Math.max(0, 10 - k);
                losses.add(0.1f + 0.05f * harm + (probe ? 0f : margin * (i % 7)));
                correct.add(i % 20 >= 2 * harm);
            }
            examples.add(ExampleLosses.newBuilder().setSampleId((probe ? "p" : "t") + i).setProbe(probe).setLossNow(0.1f)
                    .setCorrectNow(true).setLossEdited(losses).setCorrectEdited(correct).build());
        }
        return ProbeResult.newBuilder().setRunId(c.getRunId()).setCandidateId(c.getCandidateId()).setLayer(c.getLayer())
                .setStep(c.getStep()).setRhos(new ArrayList<>(c.getRhos())).setExamples(examples).setTimestampMs(1).build();
    }

    private static WeightSnapshot weight(String run, int seed) {
        float[] w = new float[D_OUT * D_IN];
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) rnd.nextGaussian();
        }
        return WeightSnapshot.newBuilder().setRunId(run).setLayer(LAYER).setStep(1).setWeight(TensorCodec.ofFloats(w, D_OUT, D_IN))
                .setBias(null).setPart(0).setParts(1).setRowOffset(0).setTimestampMs(1).build();
    }

    private static void edit(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, String run, String key) {
        send(producer, topics.editRequests(), run, EditRequest.newBuilder().setIdempotencyKey(key).setRunId(run).setLayers(List.of())
                .setRequester("it").setReason("failover test").setCreatedMs(1).build());
    }

    private static <T extends SpecificRecord> void send(KafkaProducer<String, byte[]> producer, String topic, String key, T value) {
        @SuppressWarnings("unchecked")
        AvroSerializer<T> ser = new AvroSerializer<>((Class<T>) value.getClass());
        try {
            producer.send(new ProducerRecord<>(topic, key, ser.serialize(null, value))).get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new IllegalStateException("could not send to " + topic, e);
        }
    }

    private static <T extends SpecificRecord> T decode(Class<T> type, byte[] value) {
        return new AvroDeserializer<>(type).decode(value);
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }
}
