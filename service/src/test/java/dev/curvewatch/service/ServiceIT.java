package dev.curvewatch.service;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.streams.CurvewatchStreams;
import dev.curvewatch.streams.StreamsAppConfig;
import dev.curvewatch.testkit.Await;
import dev.curvewatch.trainer.testing.TrainerSimulator;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The service on a real broker with a real worker and the real streams app: captures are
 * published, the worker's factor manifests arrive, the service refreshes and sends EditCandidates,
 * the test answers them as a trainer would (a tiny linear classifier, {@link TinyTrainer}, so the
 * calibrated rho and the memorization gap are known independently), and then checks signals,
 * scores, raw and de-duplicated alerts, dead letters, edited snapshots (W' recomputed by the
 * test), idempotency, the HTTP API with hostile input, SSE and WebSocket, and a restart.
 */
@Tag("integration")
class ServiceIT {
    static final String RUN = "it-run";
    static final String LAYER = "fc";
    static final String TOKEN = "it-token-0123456789";
    static final int TOKENS_PER_CAPTURE = 16;
    static final Duration WAIT = Duration.ofSeconds(120);
    /** A run registered before RUN that a restart with runs.max=1 forgets; it has a signal in the history. */
    static final String OLD_RUN = "old-run";
    static final String GHOST_RUN = "ghost-run";
    static final byte[] GHOST_WEIGHT = encode(WeightSnapshot.class, WeightSnapshot.newBuilder().setRunId(GHOST_RUN).setLayer(LAYER)
            .setStep(1).setWeight(TensorCodec.ofFloats(new float[4 * 8], 4, 8)).setTimestampMs(1).build());
    static final long GHOST_WEIGHT_BYTES = GHOST_WEIGHT.length + (GHOST_RUN + "/" + LAYER).length();

    static LocalKafka kafka;

    @BeforeAll
    static void broker(@TempDir Path dir) throws Exception {
        kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).capturePartitions(2).start();
    }

    @AfterAll
    static void stop() {
        if (kafka != null) {
            kafka.close();
        }
    }

    static <T extends org.apache.avro.specific.SpecificRecord> T decode(Class<T> type, byte[] value) {
        return new AvroDeserializer<>(type).decode(value);
    }

    static <T extends org.apache.avro.specific.SpecificRecord> byte[] encode(Class<T> type, T value) {
        return new AvroSerializer<>(type).serialize(null, value);
    }

    static KafkaProducer<String, byte[]> producer() {
        Properties p = new Properties();
        p.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    /** Capture i: 16 tokens, inputs with per-coordinate sd INPUT_SD, gradients with GRAD_SD. */
    static TrainerSimulator.Rows captureRows(int i) {
        return TrainerSimulator.gaussianRows(new Random(1000 + i), TOKENS_PER_CAPTURE, TinyTrainer.INPUT_SD, TinyTrainer.GRAD_SD);
    }

    static void publishCaptures(TrainerSimulator trainer, int from, int to) {
        for (int i = from; i < to; i++) {
            List<String> ids = new ArrayList<>();
            for (int t = 0; t < TOKENS_PER_CAPTURE; t++) {
                ids.add("s" + i + "-" + t);
            }
            trainer.publishCapture(LAYER, i, captureRows(i), ids);
        }
    }

    /** The uncentred input second moment of captures [0, n), in double: what the worker's A must be. */
    static double[] batchA(int n) {
        int d = TinyTrainer.D_IN;
        double[] s = new double[d * d];
        for (int i = 0; i < n; i++) {
            float[] a = captureRows(i).a();
            for (int t = 0; t < TOKENS_PER_CAPTURE; t++) {
                for (int x = 0; x < d; x++) {
                    for (int y = 0; y < d; y++) {
                        s[x * d + y] += (double) a[t * d + x] * a[t * d + y];
                    }
                }
            }
        }
        for (int k = 0; k < s.length; k++) {
            s[k] /= (double) n * TOKENS_PER_CAPTURE;
        }
        return s;
    }

    /** Lines of an SSE stream, collected by a background reader. */
    static BlockingQueue<String> sse(HttpClient http, String url) throws Exception {
        BlockingQueue<String> lines = new LinkedBlockingQueue<>();
        HttpResponse<Stream<String>> resp = http.send(HttpRequest.newBuilder(URI.create(url)).GET().build(),
                HttpResponse.BodyHandlers.ofLines());
        assertEquals(200, resp.statusCode());
        assertTrue(resp.headers().firstValue("content-type").orElse("").startsWith("text/event-stream"));
        Thread t = new Thread(() -> {
            try {
                resp.body().forEach(lines::add);
            } catch (RuntimeException ignored) {
                // stream closed at the end of the test
            }
        }, "it-sse");
        t.setDaemon(true);
        t.start();
        return lines;
    }

    /** Waits (blocking on the queue) for an SSE event of a type whose data matches; returns the data. */
    static JsonObject awaitEvent(BlockingQueue<String> lines, List<String> seen, String type, Predicate<JsonObject> match) throws Exception {
        long deadline = System.nanoTime() + WAIT.toNanos();
        int i = 0;
        while (true) {
            for (; i + 1 < seen.size(); i++) {
                if (seen.get(i).equals("event: " + type) && seen.get(i + 1).startsWith("data: ")) {
                    JsonObject d = new JsonObject(seen.get(i + 1).substring(6));
                    if (match.test(d)) {
                        return d;
                    }
                }
            }
            long left = deadline - System.nanoTime();
            assertTrue(left > 0, "no SSE event '" + type + "' matched within " + WAIT);
            String line = lines.poll(left, TimeUnit.NANOSECONDS);
            if (line != null) {
                seen.add(line);
            }
        }
    }

    static HttpResponse<String> call(HttpClient http, String method, String url, String token, String contentType, String body)
            throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30));
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        if (contentType != null) {
            b.header("Content-Type", contentType);
        }
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static void assertError(HttpResponse<String> r, int status, String what) {
        assertEquals(status, r.statusCode(), what + ": " + r.body());
        assertTrue(r.headers().firstValue("content-type").orElse("").startsWith("application/json"), what + " answers JSON");
        assertTrue(new JsonObject(r.body()).getString("error") != null, what + ": " + r.body());
    }

    static String sha256(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
    }

    static Signal signal(ConsumerRecord<byte[], byte[]> r) {
        return decode(Signal.class, r.value());
    }

    /** Waits for the last calibration signal (kept_pairs) of a factor version; returns every signal of that version by name. */
    static Map<String, Double> calibration(Tail signals, long version) {
        signals.await("kept_pairs of v" + version, WAIT, r -> {
            Signal s = signal(r);
            return s.getName().equals("kept_pairs") && s.getFactorVersion() == version ? s : null;
        });
        Map<String, Double> out = new LinkedHashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : signals.drain()) {
            Signal s = signal(r);
            if (s.getFactorVersion() == version && LAYER.equals(s.getLayer())) {
                out.put(s.getName(), s.getValue());
            }
        }
        return out;
    }

    static JsonObject named(JsonArray layers, String name) {
        return layers.stream().map(JsonObject.class::cast).filter(o -> name.equals(o.getString("name"))).findFirst()
                .orElseThrow(() -> new AssertionError("no layer " + name + " in " + layers.encode()));
    }

    /** A real 3 x 3 / 2 x 2 checkpoint of a layer of RUN whose manifest {@code change} alters before it is published. */
    static void forgeCheckpoint(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, String layer,
                                java.util.function.UnaryOperator<FactorManifest> change) {
        var a = dev.curvewatch.curvature.FactorAccumulator.restore(dev.curvewatch.curvature.FactorState.ofFloat64(3,
                dev.curvewatch.curvature.FactorMode.CUMULATIVE, 1.0, new double[]{3, 0, 0, 0, 2, 0, 0, 0, 1}, 10, 10, 0, 3));
        var g = dev.curvewatch.curvature.FactorAccumulator.restore(dev.curvewatch.curvature.FactorState.ofFloat64(2,
                dev.curvewatch.curvature.FactorMode.CUMULATIVE, 1.0, new double[]{1, 0, 0, 1}, 10, 10, 0, 3));
        new dev.curvewatch.contracts.CheckpointCodec(1 << 20).write(new dev.curvewatch.contracts.CheckpointCodec
                .Provenance(RUN, layer, 1, 1, "it", "it"), a, g, (k, v) -> producer.send(new ProducerRecord<>(topics.factors(), k,
                k.endsWith("/manifest") ? encode(FactorManifest.class, change.apply(decode(FactorManifest.class, v))) : v)));
    }

    static Map<String, String> serviceConfig(Path dir, CurvewatchTopics topics, Path rules, String tokens) {
        Map<String, String> c = new LinkedHashMap<>();
        c.put("live.clients.max", "2"); // the test's SSE stream and WebSocket; a third is refused
        c.put("weights.parked.max.bytes", Long.toString(GHOST_WEIGHT_BYTES + 16)); // one ghost weight record fits, two do not
        c.put("bootstrap", kafka.bootstrapServers());
        c.put("topic.prefix", topics.prefix());
        c.put("http.port", "0");
        c.put("auth.tokens", tokens);
        c.put("snapshot.dir", dir.resolve("snapshots").toString());
        c.put("refresh.interval.ms", "200");
        // every batch of 20 steps must be calibrated (the test checks each batch's manifest): no pacing by steps or drift here
        // (CandidatePacerTest and RefresherTest hold the pacing rules)
        c.put("calibration.min.steps", "0");
        c.put("calibration.max.steps", "0");
        c.put("instance.id", "it");
        c.put("alerts.rules.file", rules.toString());
        c.put("poll.timeout.ms", "100");
        c.put("sse.ping.ms", "1000");
        return c;
    }

    /** Threads alive now that were not in {@code before}, once each had up to the deadline to end. */
    static List<Thread> leftOver(java.util.Set<Thread> before, long deadlineNanos) throws InterruptedException {
        List<Thread> left = new ArrayList<>();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (!before.contains(t) && t.isAlive()) {
                t.join(Math.max(1, (deadlineNanos - System.nanoTime()) / 1_000_000));
                if (t.isAlive()) {
                    left.add(t);
                }
            }
        }
        return left;
    }

    @Test
    void aStartThatFailsOnABadKafkaSettingLeavesNoThreadOrPortBehind(@TempDir Path dir) throws Exception {
        int port;
        try (java.net.ServerSocket free = new java.net.ServerSocket(0)) {
            port = free.getLocalPort();
        }
        Map<String, String> c = serviceConfig(dir, kafka.topics(), dir.resolve("no-rules"), TOKEN);
        c.remove("alerts.rules.file");
        c.put("http.port", Integer.toString(port));
        // the admin client and the producer ignore it; the first consumer refuses it, after Vert.x, the
        // producer and the refresh pool were built
        c.put("kafka.auto.offset.reset", "sometimes");
        dev.curvewatch.curvature.SymmetricEigensolvers.best(); // loads the native libraries (and JavaCPP's JVM-wide deallocator thread)
        java.util.Set<Thread> before = new java.util.HashSet<>(Thread.getAllStackTraces().keySet());
        RuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(RuntimeException.class,
                () -> CurvewatchService.start(ServiceConfig.of(c)).close());
        assertTrue(String.valueOf(e.getMessage()).contains("auto.offset.reset"), e.toString());
        List<Thread> left = leftOver(before, System.nanoTime() + TimeUnit.SECONDS.toNanos(20));
        assertTrue(left.isEmpty(), "threads left behind by the failed start: " + left.stream().map(Thread::getName).toList());
        try (java.net.ServerSocket again = new java.net.ServerSocket(port)) {
            assertEquals(port, again.getLocalPort(), "the HTTP port is free");
        }
    }

    /**
     * The end-to-end run, one phase per test so that a failure names what broke: a real worker and
     * streams app next to the service, {@link TrainerSimulator} as the trainer (publishing the run,
     * its weights and captures, answering candidates with {@link TinyTrainer}, whose answers predict
     * what the service must conclude). The phases run in order on one service and share what it
     * has built; a later phase may fail after an earlier one did, the first failure is the one to read.
     */
    @Nested
    @TestInstance(TestInstance.Lifecycle.PER_CLASS)
    @TestMethodOrder(MethodOrderer.OrderAnnotation.class)
    class EndToEnd {
        Path dir;
        CurvewatchTopics topics;
        String bs;
        Path rules;
        Path tokenFile;
        TinyTrainer model;
        HttpClient http;
        RunInfo run;
        final Map<Long, TinyTrainer.Expected> byVersion = new ConcurrentHashMap<>();
        KafkaProducer<String, byte[]> producer;
        Worker worker;
        CurvewatchStreams streams;
        TrainerSimulator trainer;
        Tail signals;
        Tail scores;
        Tail raw;
        Tail snapshots;
        Tail deadLetters;
        Tail factors;
        CurvewatchService service;
        String base;
        String edits;
        final List<String> seenEvents = new ArrayList<>();
        BlockingQueue<String> events;
        final BlockingQueue<String> wsText = new LinkedBlockingQueue<>();
        WebSocket ws;
        long v1;
        TinyTrainer.Expected e1;
        String fingerprint;
        long v2;
        TinyTrainer.Expected e2;
        long refreshSignalsOfV2;

        @BeforeAll
        void start(@TempDir Path tempDir) throws Exception {
            dir = tempDir;
            topics = kafka.topics();
            bs = kafka.bootstrapServers();
            rules = dir.resolve("rules.properties");
            Files.writeString(rules, """
                    alert.gap-positive.signal=memorization_gap
                    alert.gap-positive.type=threshold
                    alert.gap-positive.threshold=0
                    alert.gap-positive.severity=WARNING
                    alert.gap-jump.signal=memorization_gap
                    alert.gap-jump.type=baseline
                    alert.gap-jump.window=4
                    alert.gap-jump.severity=CRITICAL
                    """);
            Map<String, String> wc = new LinkedHashMap<>();
            wc.put("bootstrap", bs);
            wc.put("topic.prefix", topics.prefix());
            wc.put("instance.id", "it-worker");
            wc.put("checkpoint.tokens", "100000");
            wc.put("checkpoint.interval.ms", "500");
            wc.put("poll.timeout.ms", "100");
            Map<String, String> sc = new LinkedHashMap<>();
            sc.put(StreamsAppConfig.BOOTSTRAP, bs);
            sc.put(StreamsAppConfig.TOPIC_PREFIX, topics.prefix());
            sc.put(StreamsAppConfig.APPLICATION_ID, "it-streams");
            sc.put(StreamsAppConfig.STATE_DIR, dir.resolve("streams").toString());
            sc.put(StreamsAppConfig.RESOLVE_HOLD_MS, "1000");
            // the guard edits on CRITICAL only here: this test's WARNING rule fires on every positive gap, and the files it
            // counts are those of its own REST and Kafka edit requests (the guard is tested in streams and cli)
            Path guardRules = dir.resolve("guard-rules.properties");
            Files.writeString(guardRules, "rule.gap-critical.signal=memorization_gap\nrule.gap-critical.min.severity=CRITICAL\n");
            sc.put(StreamsAppConfig.RULES_FILE, guardRules.toString());

            model = new TinyTrainer(7);
            http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
            run = RunInfo.newBuilder().setRunId(RUN).setModel("tiny-linear").setSource("service-it").setCreatedMs(1)
                    .setLayers(List.of(LayerInfo.newBuilder().setName(LAYER).setDIn(TinyTrainer.D_IN).setDOut(TinyTrainer.D_OUT)
                            .setHasBias(true).build()))
                    .setFisher(FisherKind.SAMPLED).setWeightsEvery(20).build();


            producer = producer();
            worker = Worker.start(WorkerConfig.of(wc));
            streams = CurvewatchStreams.start(StreamsAppConfig.of(sc), Duration.ofSeconds(120));
            trainer = new TrainerSimulator(bs, topics, RUN);
            signals = new Tail(bs, topics.signals());
            scores = new Tail(bs, topics.scores());
            raw = new Tail(bs, topics.alertsRaw());
            snapshots = new Tail(bs, topics.snapshots());
            deadLetters = new Tail(bs, topics.deadLetters());
            factors = new Tail(bs, topics.factors());
            trainer.answerCandidates(c -> true, c -> {
                TinyTrainer.Expected e = model.answer(c, 0.01);
                byVersion.put(c.getFactorVersion(), e);
                return e.result();
            });
            RunInfo oldRun = RunInfo.newBuilder(run).setRunId(OLD_RUN).setModel("old").build();
            producer.send(new ProducerRecord<>(topics.runs(), OLD_RUN, encode(RunInfo.class, oldRun))).get();
            producer.send(new ProducerRecord<>(topics.signals(), OLD_RUN + "/" + LAYER, encode(Signal.class, Signal.newBuilder()
                    .setRunId(OLD_RUN).setLayer(LAYER).setStep(1).setName("memorization_gap").setValue(0.01).setFactorVersion(1)
                    .setTimestampMs(1).build()))).get();
            trainer.publishRun(run);
            // W in two row parts, the bias in part 0
            for (int part = 0; part < 2; part++) {
                float[] rows = new float[2 * TinyTrainer.D_IN];
                System.arraycopy(model.w, part * rows.length, rows, 0, rows.length);
                WeightSnapshot w = WeightSnapshot.newBuilder().setRunId(RUN).setLayer(LAYER).setStep(19)
                        .setWeight(TensorCodec.ofFloats(rows, 2, TinyTrainer.D_IN))
                        .setBias(part == 0 ? TensorCodec.ofFloats(model.bias, TinyTrainer.D_OUT) : null)
                        .setPart(part).setParts(2).setRowOffset(2 * part).setTimestampMs(1).build();
                producer.send(new ProducerRecord<>(topics.weights(), RUN + "/" + LAYER, encode(WeightSnapshot.class, w))).get();
            }

            tokenFile = dir.resolve("rotating-tokens");
            Files.writeString(tokenFile, "# rotated while the service runs\nrotating-1\n");
            Map<String, String> withFile = new LinkedHashMap<>(serviceConfig(dir, topics, rules, TOKEN));
            withFile.put("auth.tokens.file", tokenFile.toString());
            service = CurvewatchService.start(ServiceConfig.of(withFile));
            base = service.url();
            assertTrue(service.awaitCaughtUp(WAIT), "catch-up");
            edits = base + "/api/runs/" + RUN + "/edits";
            events = sse(http, base + "/api/events?run=" + RUN);
            ws = http.newWebSocketBuilder().buildAsync(URI.create(base.replace("http:", "ws:") + "/api/ws?run=" + RUN),
                    new WebSocket.Listener() {
                        private final StringBuilder message = new StringBuilder();

                        @Override
                        public CompletionStage<?> onText(WebSocket socket, CharSequence data, boolean last) {
                            message.append(data); // a message may arrive in parts
                            if (last) {
                                wsText.add(message.toString());
                                message.setLength(0);
                            }
                            socket.request(1);
                            return null;
                        }
                    }).get(30, TimeUnit.SECONDS);
        }

        @AfterAll
        void stop() throws Exception {
            for (AutoCloseable c : new AutoCloseable[] {service, factors, deadLetters, snapshots, raw, scores, signals, trainer,
                    streams, worker, producer}) {
                if (c != null) {
                    c.close();
                }
            }
        }

        @Test
        @Order(1)
        void anEditOfALayerNotCalibratedYetIsRefusedWithItsReasonAndAThirdLiveClientToo() throws Exception {
            // an edit the service cannot serve yet is refused at the REST call with its reason, never a 202 and a dead letter
            String editsUrl = base + "/api/runs/" + RUN + "/edits";
            HttpResponse<String> notCalibrated = call(http, "POST", editsUrl, TOKEN, "application/json", "{\"layers\": [{\"layer\": \"fc\"}]}");
            assertError(notCalibrated, 409, "a layer not calibrated yet");
            assertTrue(notCalibrated.body().contains("has no calibrated rho"), notCalibrated.body());
            HttpResponse<String> noBasis = call(http, "POST", editsUrl, TOKEN, "application/json",
                    "{\"layers\": [{\"layer\": \"fc\", \"rho\": 0.9}]}");
            assertError(noBasis, 409, "an explicit rho, no eigenbasis yet");
            assertTrue(noBasis.body().contains("no eigenbasis yet"), noBasis.body());
            // live.clients.max=2: the SSE stream and the WebSocket hold both slots
            assertError(call(http, "GET", base + "/api/events", null, null, null), 503, "a third live client");
        }

        @Test
        @Order(2)
        void theFirstBatchIsCalibratedAsTheTrainersModelPredicts() throws Exception {
            // ---- first batch: factors ready -> refresh -> candidate -> probe result -> calibration
            publishCaptures(trainer, 0, 20);
            v1 = factors.await("manifest of 320 tokens", WAIT, r -> {
                if (!new String(r.key(), StandardCharsets.UTF_8).endsWith("/manifest")) {
                    return null;
                }
                FactorManifest m = decode(FactorManifest.class, r.value());
                return m.getTokenCount() == 320 ? m.getVersion() : null;
            });
            Map<String, Double> cal = calibration(signals, v1);
            assertEquals(1.0, cal.get("calibration_valid"), "a calibration that means something");
            e1 = byVersion.get(v1);
            assertNotNull(e1, "the trainer answered the candidate of v" + v1);
            System.out.printf("v%d: calibrated rho %.6f (index %d), gap %.5f, kept %d pairs%n", v1, e1.rho(), e1.index(), e1.gap(), e1.keptPairs());
            assertTrue(e1.rho() < 1 && e1.gap() > 0.01, "the data make a real edit with a positive gap: " + e1.rho() + " " + e1.gap());
            assertEquals(e1.rho(), cal.get("calibrated_rho"), "calibrated rho");
            assertEquals(e1.gap(), cal.get("memorization_gap"), 1e-9, "memorization gap");
            assertEquals((double) e1.keptPairs(), cal.get("kept_pairs"), "kept pairs");
            assertEquals(1.0, cal.get("probe_accuracy_now"), "labels are the model's own predictions");
            for (String name : List.of("effective_rank_g", "effective_rank_a", "eigh_skipped", "refresh_seconds", "train_sensitivity",
                    "probe_sensitivity", "probe_accuracy_edited")) {
                assertTrue(cal.containsKey(name), name + " in " + cal.keySet());
            }
            // the candidate's eigenpairs against the test's own batch factor of the same captures
            double[] a = batchA(20);
            float[] ua = TensorCodec.toFloatArray(e1.candidate().getBasisA(), "basis_a");
            float[] mu = TensorCodec.toFloatArray(e1.candidate().getEigenvaluesA(), "eigenvalues_a");
            int d = TinyTrainer.D_IN;
            double worst = 0;
            for (int k = 0; k < d; k++) {
                for (int i = 0; i < d; i++) {
                    double au = 0;
                    for (int j = 0; j < d; j++) {
                        au += a[i * d + j] * ua[j * d + k];
                    }
                    worst = Math.max(worst, Math.abs(au - mu[k] * ua[i * d + k]) / mu[0]);
                }
            }
            assertTrue(worst < 1e-5, "A u = mu u for the candidate's float32 eigenpairs: " + worst);
        }

        @Test
        @Order(3)
        void theTrainingExamplesGetExactAndLossScores() throws Exception {
            // EXACT and LOSS scores of the training examples
            ExampleScores exact = scores.await("EXACT scores of v" + v1, WAIT, r -> {
                ExampleScores s = decode(ExampleScores.class, r.value());
                return s.getKind() == ScoreKind.EXACT && s.getStep() == e1.candidate().getStep() + TinyTrainer.MEASURED_AHEAD ? s : null;
            });
            assertEquals(e1.rho(), exact.getRho());
            assertEquals(e1.exact().size(), exact.getScores().size());
            for (ExampleScore s : exact.getScores()) {
                assertEquals(e1.exact().get(s.getSampleId()), s.getScore(), 1e-12, s.getSampleId());
            }
            scores.await("LOSS scores", WAIT, r -> decode(ExampleScores.class, r.value()).getKind() == ScoreKind.LOSS ? true : null);
        }

        @Test
        @Order(4)
        void aRawAlertFiresAtTheStepTheTrainerMeasured() throws Exception {
            // a raw alert: the gap is above 0
            fingerprint = sha256((RUN + "|" + LAYER + "|gap-positive").getBytes(StandardCharsets.UTF_8)).substring(0, 32);
            // at the step the trainer measured, not the (older) step of the factors
            long measured = e1.candidate().getStep() + TinyTrainer.MEASURED_AHEAD;
            Alert alert = raw.await("FIRING gap-positive at step " + measured, WAIT, r -> {
                Alert x = decode(Alert.class, r.value());
                return x.getRule().equals("gap-positive") && x.getStatus() == AlertStatus.FIRING
                        && x.getStep() == measured ? x : null;
            });
            assertEquals(fingerprint, alert.getFingerprint());
            assertEquals(fingerprint, new String(raw.drain().stream().filter(r -> decode(Alert.class, r.value()).getId().equals(alert.getId()))
                    .findFirst().orElseThrow().key(), StandardCharsets.UTF_8), "key = fingerprint");
            assertEquals(e1.gap(), alert.getValue(), 1e-9);
            assertEquals(LAYER, alert.getLayer());
            assertEquals(10, alert.getTopExamples().size());
            assertTrue(alert.getTopExamples().get(0).getSampleId().startsWith("train-"));
        }

        @Test
        @Order(5)
        void badProbeResultsEditRequestsAndCapturesAreDeadLettersAndFailedSnapshots() throws Exception {
            // ---- dead letters: a ProbeResult for a candidate never sent, garbage, bad edit requests
            ProbeResult stray = ProbeResult.newBuilder(e1.result()).setCandidateId("never-sent").build();
            producer.send(new ProducerRecord<>(topics.probeResults(), RUN, encode(ProbeResult.class, stray))).get();
            producer.send(new ProducerRecord<>(topics.probeResults(), RUN, new byte[]{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})).get();
            EditRequest unknownLayer = EditRequest.newBuilder().setIdempotencyKey("bad-layer").setRunId(RUN)
                    .setLayers(List.of(new LayerRho("nope", 0.9))).setRequester("it").setCreatedMs(1).build();
            EditRequest unknownRun = EditRequest.newBuilder(unknownLayer).setIdempotencyKey("bad-run").setRunId("no-such-run").build();
            producer.send(new ProducerRecord<>(topics.editRequests(), RUN, encode(EditRequest.class, unknownLayer))).get();
            producer.send(new ProducerRecord<>(topics.editRequests(), "no-such-run", encode(EditRequest.class, unknownRun))).get();
            Map<String, String> expectedDl = Map.of(
                    "never-sent", "INVALID_FIELD", "garbage", "BAD_HEADER", "bad-layer", "UNKNOWN_LAYER", "bad-run", "UNKNOWN_RUN");
            Map<String, DeadLetter> dls = new LinkedHashMap<>();
            deadLetters.await("four service dead letters", WAIT, r -> {
                DeadLetter dl = decode(DeadLetter.class, r.value());
                if (!dl.getComponent().equals("service:it")) {
                    return null;
                }
                String which = dl.getReason().contains("never-sent") ? "never-sent" : dl.getReason().contains("'nope'") ? "bad-layer"
                        : dl.getReason().contains("no-such-run") ? "bad-run" : dl.getReasonCode().equals("BAD_HEADER") ? "garbage" : "?";
                dls.put(which, dl);
                return dls.keySet().containsAll(expectedDl.keySet()) ? true : null;
            });
            expectedDl.forEach((k, reason) -> assertEquals(reason, dls.get(k).getReasonCode(), k + ": " + dls.get(k).getReason()));
            // the edit requests that could not be served also end in FAILED SnapshotEvents their callers can read
            Map<String, SnapshotEvent> failedEdits = new LinkedHashMap<>();
            snapshots.await("FAILED events of bad-layer and bad-run", WAIT, r -> {
                SnapshotEvent x = decode(SnapshotEvent.class, r.value());
                if (x.getStatus() == dev.curvewatch.avro.SnapshotStatus.FAILED) {
                    failedEdits.put(x.getIdempotencyKey(), x);
                }
                return failedEdits.keySet().containsAll(List.of("bad-layer", "bad-run")) ? true : null;
            });
            assertEquals(dls.get("bad-layer").getReason(), failedEdits.get("bad-layer").getReason());
            assertEquals("", failedEdits.get("bad-layer").getUri());
            assertTrue(failedEdits.get("bad-run").getReason().startsWith("UNKNOWN_RUN: "), failedEdits.get("bad-run").getReason());
            JsonObject failedListed = new JsonArray(call(http, "GET", base + "/api/runs/" + RUN + "/snapshots", null, null, null).body())
                    .stream().map(JsonObject.class::cast).filter(o -> "bad-layer".equals(o.getString("idempotency_key"))).findFirst()
                    .orElseThrow();
            assertEquals("FAILED", failedListed.getString("status"));
            assertNull(failedListed.getString("download"), "nothing to download");
            assertError(call(http, "GET", base + "/api/snapshots/" + failedListed.getString("snapshot_id") + "/file", TOKEN, null, null),
                    404, "a failed snapshot has no file");
            // a capture the worker cannot decode is a dead letter of its run/layer, and the run's layer says so
            producer.send(new ProducerRecord<>(topics.captures(), RUN + "/" + LAYER, new byte[]{7, 7, 7, 7})).get();
            JsonObject fcNow = Await.until(() -> named(new JsonObject(call(http, "GET", base + "/api/runs/" + RUN, null, null, null)
                    .body()).getJsonArray("layers"), LAYER), o -> o.getJsonObject("dead_letters").getLong("total") > 0, WAIT,
                    "the capture's dead letter on its layer");
            assertEquals("captures", fcNow.getJsonObject("dead_letters").getString("last_topic"), fcNow.encode());
            assertTrue(fcNow.getJsonObject("dead_letters").getString("last_component").startsWith("worker:"), fcNow.encode());
            assertEquals(topics.probeResults(), dls.get("never-sent").getTopic());
            assertEquals(topics.editRequests(), dls.get("bad-layer").getTopic());
        }

        @Test
        @Order(6)
        void aFactorCheckpointWithNaNIsAFailedRefreshNotACrash() throws Exception {
            // ---- a factor checkpoint with NaN (forged: workers never write one): a failed refresh, not a crash
            double[] nanSum = new double[3 * 3];
            nanSum[0] = Double.NaN;
            nanSum[4] = 1;
            nanSum[8] = 1;
            var nanA = dev.curvewatch.curvature.FactorAccumulator.restore(dev.curvewatch.curvature.FactorState.ofFloat64(3,
                    dev.curvewatch.curvature.FactorMode.CUMULATIVE, 1.0, nanSum, 10, 10, 0, 3));
            var okG = dev.curvewatch.curvature.FactorAccumulator.restore(dev.curvewatch.curvature.FactorState.ofFloat64(2,
                    dev.curvewatch.curvature.FactorMode.CUMULATIVE, 1.0, new double[]{1, 0, 0, 1}, 10, 10, 0, 3));
            new dev.curvewatch.contracts.CheckpointCodec(1 << 20).write(new dev.curvewatch.contracts.CheckpointCodec
                    .Provenance(RUN, "nan-layer", 1, 1, "it", "it"), nanA, okG, (k, v) -> producer.send(new ProducerRecord<>(topics.factors(), k, v)));
            producer.flush();
            Signal failed = signals.await("refresh_failed of nan-layer", WAIT, r -> {
                Signal x = signal(r);
                return x.getName().equals("refresh_failed") && "nan-layer".equals(x.getLayer()) ? x : null;
            });
            assertEquals(1.0, failed.getValue());
            LayerStatus nanStatus = service.state().layer(RUN, "nan-layer").orElseThrow();
            assertEquals(1, nanStatus.failedRefreshes());
            assertTrue(nanStatus.status().contains("factor A has NaN at row 0, column 0"), nanStatus.status());
        }

        @Test
        @Order(7)
        void badManifestsAndGhostWeightsAreDeadLettersWithTheirReason() throws Exception {
            // ---- bad manifests (forged) are dead letters with their reason; before, each of the first two
            // ended the ingest thread for good (an array of d_in^2 doubles; an IllegalArgumentException)
            FactorManifest huge = FactorManifest.newBuilder().setRunId(RUN).setLayer("huge-layer").setVersion(1).setDIn(50_000)
                    .setDOut(2).setTokenCount(10).setWeight(10).setStepFirst(0).setStepLast(3).setChunksA(1).setChunksG(1)
                    .setSha256("0".repeat(64)).setCreatedMs(1).build();
            for (String kind : List.of("A", "G")) {
                producer.send(new ProducerRecord<>(topics.factors(), RUN + "/huge-layer/" + kind + "/0", encode(dev.curvewatch.avro.FactorChunk.class,
                        dev.curvewatch.avro.FactorChunk.newBuilder().setRunId(RUN).setLayer("huge-layer")
                                .setFactor(dev.curvewatch.avro.FactorKind.valueOf(kind)).setVersion(1).setIndex(0).setCount(1).setOffset(0)
                                .setDim(kind.equals("A") ? 50_000 : 2).setData(TensorCodec.ofDoubles(new double[4], 4)).build())));
            }
            producer.send(new ProducerRecord<>(topics.factors(), RUN + "/huge-layer/manifest", encode(FactorManifest.class, huge)));
            forgeCheckpoint(producer, topics, "decay-layer", m -> FactorManifest.newBuilder(m)
                    .setMode(dev.curvewatch.avro.FactorMode.EMA).setEmaDecay(1.5).build());
            producer.send(new ProducerRecord<>(topics.factors(), RUN + "/" + LAYER + "/manifest", encode(FactorManifest.class,
                    FactorManifest.newBuilder(huge).setLayer(LAYER).setVersion(99).setDIn(9).setDOut(4).build())));
            // a checkpoint whose chunks do not match its manifest's checksum: a failed refresh, published as one
            forgeCheckpoint(producer, topics, "corrupt-layer", m -> FactorManifest.newBuilder(m).setSha256("ab".repeat(32)).build());
            // weights of a run nobody registered: one record waits, the next is over weights.parked.max.bytes
            for (int i = 0; i < 2; i++) {
                producer.send(new ProducerRecord<>(topics.weights(), GHOST_RUN + "/" + LAYER, GHOST_WEIGHT));
            }
            producer.flush();
            Map<String, String> factorDl = new LinkedHashMap<>();
            deadLetters.await("dead letters of the bad manifests and the ghost weights", WAIT, r -> {
                DeadLetter dl = decode(DeadLetter.class, r.value());
                for (String what : List.of("huge-layer", "decay-layer", "d_in=9", "weights.parked.max.bytes")) {
                    if (dl.getReason().contains(what)) {
                        factorDl.put(what, dl.getReasonCode() + ": " + dl.getReason());
                    }
                }
                return factorDl.size() == 4 ? true : null;
            });
            System.out.println("refused: " + factorDl);
            assertTrue(factorDl.get("huge-layer").startsWith("OVERSIZED"), factorDl.get("huge-layer"));
            assertTrue(factorDl.get("decay-layer").startsWith("INVALID_FIELD"), factorDl.get("decay-layer"));
            assertTrue(factorDl.get("d_in=9").startsWith("SHAPE_MISMATCH") && factorDl.get("d_in=9").contains("d_in=8"), factorDl.get("d_in=9"));
            assertTrue(factorDl.get("weights.parked.max.bytes").startsWith("UNKNOWN_RUN"), factorDl.get("weights.parked.max.bytes"));
            Signal corrupt = signals.await("refresh_failed of corrupt-layer", WAIT, r -> {
                Signal x = signal(r);
                return x.getName().equals("refresh_failed") && "corrupt-layer".equals(x.getLayer()) ? x : null;
            });
            assertEquals(1.0, corrupt.getValue());
            LayerStatus corruptStatus = service.state().layer(RUN, "corrupt-layer").orElseThrow();
            assertTrue(corruptStatus.status().contains("corrupt checkpoint") && corruptStatus.status().contains("checksum"),
                    corruptStatus.status());
            awaitEvent(events, seenEvents, "layer", o -> "corrupt-layer".equals(o.getString("name")) && o.getInteger("failed_refreshes") == 1);
            assertEquals(LAYER, service.state().layer(RUN, LAYER).map(LayerStatus::layer).orElseThrow());
            assertEquals(v1, service.state().layer(RUN, LAYER).orElseThrow().factorVersion(), "the refused manifest replaced nothing");
        }

        @Test
        @Order(8)
        void theHttpReadsShowWhatTheServiceComputed() throws Exception {
            // ---- HTTP reads
            HttpResponse<String> health = call(http, "GET", base + "/health", null, null, null);
            assertEquals(200, health.statusCode(), health.body());
            assertEquals("UP", new JsonObject(health.body()).getString("status"));
            String metrics = call(http, "GET", base + "/metrics", null, null, null).body();
            assertTrue(metrics.contains("curvewatch_service_refreshes_total{result=\"ok\"}"), metrics);
            assertTrue(metrics.contains("curvewatch_service_dead_letters_total{reason=\"UNKNOWN_LAYER\"} 1.0"), metrics);
            JsonArray runs = new JsonArray(call(http, "GET", base + "/api/runs", null, null, null).body());
            JsonObject listed = runs.stream().map(JsonObject.class::cast).filter(o -> o.getString("run_id").equals(RUN)).findFirst().orElseThrow();
            assertEquals("tiny-linear", listed.getString("model"));
            assertEquals(8, named(listed.getJsonArray("layers"), LAYER).getInteger("d_in"));
            JsonObject detail = new JsonObject(call(http, "GET", base + "/api/runs/" + RUN, null, null, null).body());
            JsonObject fc = named(detail.getJsonArray("layers"), LAYER);
            JsonObject nanLayer = named(detail.getJsonArray("layers"), "nan-layer");
            assertEquals(List.of("corrupt-layer", LAYER, "nan-layer"), detail.getJsonArray("layers").stream()
                    .map(o -> ((JsonObject) o).getString("name")).toList(), "refused manifests made no layer");
            assertTrue(nanLayer.getString("last_failure").contains("NaN"), nanLayer.encode());
            assertEquals(e1.rho(), fc.getDouble("calibrated_rho"));
            assertEquals(v1, fc.getLong("factor_version"));
            assertEquals(320, fc.getLong("factor_tokens"));
            assertTrue(fc.getJsonObject("spectrum_g").getInteger("count99") >= 1);
            assertError(call(http, "GET", base + "/api/runs/no-such-run", null, null, null), 404, "unknown run");
            JsonObject series = new JsonObject(call(http, "GET", base + "/api/runs/" + RUN + "/signals?layer=fc&name=memorization_gap",
                    null, null, null).body());
            JsonArray pts = series.getJsonArray("series").getJsonObject(0).getJsonArray("points");
            assertEquals(e1.gap(), pts.getJsonObject(pts.size() - 1).getDouble("value"), 1e-9);
            JsonObject top = new JsonObject(call(http, "GET", base + "/api/runs/" + RUN + "/scores?layer=fc&kind=EXACT&top=5",
                    null, null, null).body());
            List<Double> want = e1.exact().values().stream().sorted((x, y) -> Double.compare(y, x)).limit(5).toList();
            List<Double> got = top.getJsonArray("top").stream().map(o -> ((JsonObject) o).getDouble("score")).toList();
            assertEquals(want.size(), got.size());
            for (int i = 0; i < want.size(); i++) {
                assertEquals(want.get(i), got.get(i), 1e-12);
            }
            JsonObject spectra = new JsonObject(call(http, "GET", base + "/api/runs/" + RUN + "/spectra?layer=fc", null, null, null).body());
            float[] lambda = TensorCodec.toFloatArray(e1.candidate().getEigenvaluesG(), "eigenvalues_g");
            assertEquals(lambda.length, spectra.getJsonArray("g").size());
            for (int i = 0; i < lambda.length; i++) {
                assertEquals(lambda[i], spectra.getJsonArray("g").getDouble(i), 1e-6 * lambda[0]);
            }
        }

        @Test
        @Order(9)
        void theSecondBatchIsSeenLiveOverSseAndWebSocket() throws Exception {
            // ---- second batch, watched live: SSE and WebSocket see the new signals; the drift is reported
            publishCaptures(trainer, 20, 40);
            v2 = factors.await("manifest of 640 tokens", WAIT, r -> {
                if (!new String(r.key(), StandardCharsets.UTF_8).endsWith("/manifest")) {
                    return null;
                }
                FactorManifest m = decode(FactorManifest.class, r.value());
                return m.getTokenCount() == 640 ? m.getVersion() : null;
            });
            Map<String, Double> cal2 = calibration(signals, v2);
            e2 = byVersion.get(v2);
            assertNotNull(e2);
            assertEquals(e2.rho(), cal2.get("calibrated_rho"));
            assertEquals(e2.gap(), cal2.get("memorization_gap"), 1e-9);
            Signal drift = signals.await("basis_drift_a", WAIT, r -> signal(r).getName().equals("basis_drift_a") ? signal(r) : null);
            assertTrue(drift.getValue() >= 0 && drift.getValue() < 1, "drift " + drift.getValue());
            JsonObject live = awaitEvent(events, seenEvents, "signal", o -> o.getString("name").equals("memorization_gap")
                    && o.getLong("factor_version") == v2);
            assertEquals(RUN, live.getString("run_id"));
            long wsDeadline = System.nanoTime() + WAIT.toNanos();
            JsonObject wsSignal = null;
            while (wsSignal == null) {
                String m = wsText.poll(Math.max(1, wsDeadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                assertNotNull(m, "a WebSocket signal event");
                JsonObject o = new JsonObject(m);
                if (o.getString("type").equals("signal") && o.getJsonObject("data").getLong("factor_version") == v2) {
                    wsSignal = o;
                }
            }
            assertEquals(RUN, wsSignal.getJsonObject("data").getString("run_id"));
            ws.sendClose(WebSocket.NORMAL_CLOSURE, "done");
        }

        @Test
        @Order(10)
        void theDeduplicatedAlertReachesTheApi() throws Exception {
            // the de-duplicated alert (streams) reaches the API
            JsonObject liveAlert = awaitEvent(events, seenEvents, "alert", o -> o.getString("fingerprint").equals(fingerprint));
            assertEquals("FIRING", liveAlert.getString("status"));
            JsonArray alerts = new JsonArray(call(http, "GET", base + "/api/alerts?run=" + RUN + "&status=FIRING", null, null, null).body());
            assertTrue(alerts.stream().anyMatch(o -> ((JsonObject) o).getString("fingerprint").equals(fingerprint)), alerts.encode());
            JsonObject runAgain = new JsonArray(call(http, "GET", base + "/api/runs", null, null, null).body()).getJsonObject(0);
            assertTrue(runAgain.getInteger("firing_alerts") >= 1);
        }

        @Test
        @Order(11)
        void authAndHostileInputGetClearErrors() throws Exception {
            // ---- auth and hostile input
            assertError(call(http, "POST", edits, null, "application/json", "{}"), 401, "no token");
            assertError(call(http, "POST", edits, "wrong-token", "application/json", "{}"), 401, "wrong token");
            assertError(call(http, "POST", edits, TOKEN, "application/json", "{\"layers\": [ {\"layer\": "), 400, "bad JSON");
            assertError(call(http, "POST", edits, TOKEN, "text/plain", "layers=fc"), 415, "not JSON");
            assertError(call(http, "POST", edits, TOKEN, "application/json", "{\"reason\": \"" + "x".repeat(100 * 1024) + "\"}"), 413, "100 KiB body");
            assertError(call(http, "POST", edits, TOKEN, "application/json", "{\"layerz\": []}"), 400, "unknown field");
            assertError(call(http, "POST", edits, TOKEN, "application/json", "{\"layers\": [{\"layer\": \"nope\"}]}"), 404, "unknown layer");
            assertError(call(http, "POST", edits, TOKEN, "application/json", "{\"layers\": [{\"layer\": \"fc\", \"rho\": 2}]}"), 400, "rho 2");
            assertError(call(http, "POST", edits, TOKEN, "application/json", "{\"idempotency_key\": \"../x\"}"), 400, "bad key");
            assertError(call(http, "POST", base + "/api/runs/no-such-run/edits", TOKEN, "application/json", "{}"), 404, "unknown run");
            assertError(call(http, "GET", base + "/api/runs/..%2F..%2Fetc%2Fpasswd", null, null, null), 400, "encoded traversal in a run id");
            HttpResponse<String> dots = call(http, "GET", base + "/api/runs/%2e%2e/snapshots", null, null, null);
            assertTrue(dots.statusCode() == 404 || dots.statusCode() == 400, "dot segments: " + dots.statusCode());
            assertTrue(new JsonObject(dots.body()).containsKey("error"));
            assertError(call(http, "GET", base + "/api/snapshots/..%2F..%2F..%2Fetc%2Fpasswd/file", TOKEN, null, null), 400, "traversal in a snapshot id");
            assertError(call(http, "GET", base + "/api/snapshots/snap-none/file", TOKEN, null, null), 404, "unknown snapshot");
            assertError(call(http, "GET", base + "/api/snapshots/snap-none/file", null, null, null), 401, "download needs a token");
            // a token file rotated while the service runs: the new token works, the revoked one no longer does
            assertError(call(http, "GET", base + "/api/snapshots/snap-none/file", "rotating-1", null, null), 404, "file token");
            Files.writeString(tokenFile, "rotating-2\n");
            Files.setLastModifiedTime(tokenFile, java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis() + 5000));
            Await.until(() -> call(http, "GET", base + "/api/snapshots/snap-none/file", "rotating-2", null, null).statusCode(),
                    status -> status == 404, Duration.ofSeconds(20), "the rotated-in token accepted");
            assertError(call(http, "GET", base + "/api/snapshots/snap-none/file", "rotating-2", null, null), 404, "rotated-in token");
            assertError(call(http, "GET", base + "/api/snapshots/snap-none/file", "rotating-1", null, null), 401, "revoked token");
            assertError(call(http, "GET", base + "/api/snapshots/snap-none/file", TOKEN, null, null), 404, "auth.tokens stay");
            assertError(call(http, "GET", base + "/api/runs/" + RUN + "/signals?limit=99999", null, null, null), 400, "limit");
            assertError(call(http, "GET", base + "/api/runs/" + RUN + "/signals?layer=..%2Fx", null, null, null), 400, "layer id");
            assertError(call(http, "GET", base + "/api/runs/" + RUN + "/scores?layer=fc&kind=FIRST_ORDER", null, null, null), 400,
                    "first-order scores are the trainer's");
            assertError(call(http, "GET", base + "/api/runs/" + RUN + "/scores?layer=fc&kind=nope", null, null, null), 400, "kind");
            assertError(call(http, "GET", base + "/api/nothing-here", null, null, null), 404, "unknown endpoint");
            assertError(call(http, "DELETE", base + "/api/runs/" + RUN, null, null, null), 405, "wrong method");
        }

        @Test
        @Order(12)
        void aPostedRefreshRefreshesWithoutNewFactors() throws Exception {
            // ---- POST refresh: the layer refreshes again without new factors
            long before = signals.drain().stream().filter(r -> signal(r).getName().equals("effective_rank_g")
                    && signal(r).getFactorVersion() == v2).count();
            HttpResponse<String> refresh = call(http, "POST", base + "/api/runs/" + RUN + "/refresh", TOKEN, null, null);
            assertEquals(202, refresh.statusCode(), refresh.body());
            signals.await("a forced refresh of v" + v2, WAIT, new java.util.function.Function<>() {
                int n;

                @Override
                public Boolean apply(ConsumerRecord<byte[], byte[]> r) {
                    Signal s = signal(r);
                    if (s.getName().equals("effective_rank_g") && s.getFactorVersion() == v2) {
                        n++;
                    }
                    return n > before ? true : null;
                }
            });
        }

        @Test
        @Order(13)
        void aPostedEditWritesTheSnapshotTheTestComputes() throws Exception {
            // ---- edits: POST -> EditRequest -> safetensors snapshot + SnapshotEvent
            // wait until the forced refresh's candidate is calibrated too, so the calibrated rho is e2's
            signals.await("calibration after the forced refresh", WAIT, new java.util.function.Function<>() {
                int n;

                @Override
                public Boolean apply(ConsumerRecord<byte[], byte[]> r) {
                    Signal s = signal(r);
                    if (s.getName().equals("calibrated_rho") && s.getFactorVersion() == v2) {
                        n++;
                    }
                    return n >= 2 ? true : null;
                }
            });
            e2 = byVersion.get(v2);
            HttpResponse<String> accepted = call(http, "POST", edits, TOKEN, "application/json",
                    "{\"layers\": [{\"layer\": \"fc\"}], \"reason\": \"it\", \"idempotency_key\": \"k-1\"}");
            assertEquals(202, accepted.statusCode(), accepted.body());
            assertEquals("k-1", new JsonObject(accepted.body()).getString("idempotency_key"));
            JsonObject snapEvent = awaitEvent(events, seenEvents, "snapshot", o -> o.getString("idempotency_key").equals("k-1"));
            SnapshotEvent ev = snapshots.await("snapshot k-1", WAIT, r -> {
                SnapshotEvent x = decode(SnapshotEvent.class, r.value());
                return x.getIdempotencyKey().equals("k-1") ? x : null;
            });
            assertEquals(ev.getSnapshotId(), snapEvent.getString("snapshot_id"));
            assertEquals(RUN + "/" + ev.getSnapshotId() + ".safetensors", ev.getUri());
            assertEquals(List.of(new LayerRho(LAYER, e2.rho())), ev.getLayers());
            assertEquals(Map.of(LAYER, v2), ev.getFactorVersions());
            assertEquals(19, ev.getStep());
            JsonArray listedSnaps = new JsonArray(call(http, "GET", base + "/api/runs/" + RUN + "/snapshots", null, null, null).body());
            assertEquals(ev.getSha256(), listedSnaps.getJsonObject(0).getString("sha256"));
            HttpResponse<byte[]> file = http.send(HttpRequest.newBuilder(URI.create(base + listedSnaps.getJsonObject(0).getString("download")))
                    .header("Authorization", "Bearer " + TOKEN).build(), HttpResponse.BodyHandlers.ofByteArray());
            assertEquals(200, file.statusCode());
            assertEquals(ev.getSha256(), sha256(file.body()), "sha256 of the downloaded bytes");
            assertEquals(ev.getSizeBytes(), file.body().length);
            Path local = dir.resolve("downloaded.safetensors");
            Files.write(local, file.body());
            try (SafetensorsFile st = SafetensorsFile.open(local)) {
                float[] edited = st.readFloat32(LAYER + ".weight");
                double[] wantW = e2.edited()[e2.index()];
                double scale = 0;
                double err = 0;
                for (int i = 0; i < wantW.length; i++) {
                    scale = Math.max(scale, Math.abs(wantW[i]));
                    err = Math.max(err, Math.abs(edited[i] - wantW[i]));
                }
                System.out.printf("snapshot W' vs the test's own edit (float32 bases): max relative error %.2e%n", err / scale);
                assertTrue(err / scale < 1e-5, "W' relative error " + err / scale);
                double moved = 0;
                for (int i = 0; i < wantW.length; i++) {
                    moved = Math.max(moved, Math.abs(edited[i] - model.w[i]));
                }
                assertTrue(moved > 1e-3 * scale, "the edit changed W");
                assertArrayEquals(model.bias, st.readFloat32(LAYER + ".bias"), "bias unchanged");
                assertEquals(Double.toString(e2.rho()), st.metadata().get("curvewatch.rho." + LAYER));
                assertEquals(Long.toString(e2.keptPairs()), st.metadata().get("curvewatch.kept_pairs." + LAYER));
                assertEquals("k-1", st.metadata().get("curvewatch.idempotency_key"));
            }
        }

        @Test
        @Order(14)
        void aSecondRequestWithTheSameIdempotencyKeyMakesNoSecondSnapshot() throws Exception {
            // idempotency: the same key again is no new snapshot; the next key is
            assertEquals(202, call(http, "POST", edits, TOKEN, "application/json", "{\"idempotency_key\": \"k-1\"}").statusCode());
            assertEquals(202, call(http, "POST", edits, TOKEN, "application/json",
                    "{\"layers\": [{\"layer\": \"fc\", \"rho\": 0.9}], \"idempotency_key\": \"k-2\"}").statusCode());
            SnapshotEvent ev2 = snapshots.await("snapshot k-2", WAIT, r -> {
                SnapshotEvent x = decode(SnapshotEvent.class, r.value());
                return x.getIdempotencyKey().equals("k-2") ? x : null;
            });
            assertEquals(0.9, ev2.getLayers().get(0).getRho());
            assertEquals(1, snapshots.count(r -> decode(SnapshotEvent.class, r.value()).getIdempotencyKey().equals("k-1")),
                    "one snapshot per idempotency key");
            try (var files = Files.list(dir.resolve("snapshots").resolve(RUN))) {
                assertEquals(2, files.count(), "two files for two keys (a FAILED request writes none)");
            }
            // the edit thread lists its event right after the broker acknowledged it, which the tail may see first
            Await.until(() -> service.state().snapshots(RUN).stream().anyMatch(x -> x.getIdempotencyKey().equals("k-2")), WAIT,
                    "k-2 listed");
            assertEquals(List.of("k-2", "k-1"), service.state().snapshots(RUN).stream()
                    .filter(x -> x.getStatus() == dev.curvewatch.avro.SnapshotStatus.WRITTEN).map(SnapshotEvent::getIdempotencyKey).toList());
            assertEquals(3, service.state().snapshots(RUN).size(), "and the FAILED bad-layer request");
            LayerStatus st = service.state().layer(RUN, LAYER).orElseThrow();
            assertEquals(e2.rho(), st.calibratedRho());
            assertEquals(0, st.failedRefreshes());
            assertTrue(st.refreshes() >= 3, "v1, v2 and the forced refresh: " + st.refreshes());
            refreshSignalsOfV2 = signals.drain().stream().filter(r -> signal(r).getName().equals("effective_rank_g")
                    && signal(r).getFactorVersion() == v2).count();
            System.out.println("refresh latencies (factors ready -> signals): " + signals.drain().stream().map(ServiceIT::signal)
                    .filter(s -> s.getName().equals("refresh_seconds")).map(s -> String.format("%.3f s", s.getAttributes().get("latency_seconds")))
                    .toList());
            assertTrue(trainer.failure() == null, String.valueOf(trainer.failure()));
        }

        @Test
        @Order(15)
        void aRestartWithoutTokensRestoresHistoryCalibrationAndAnsweredKeys() throws Exception {
            service.close();
            service = null; // the restart below replaces it
            Map<String, String> restart = serviceConfig(dir, topics, rules, "");
            restart.put("runs.max", "1"); // OLD_RUN was registered first: it is forgotten, and its history must not bring it back
            try (CurvewatchService again = CurvewatchService.start(ServiceConfig.of(restart))) {
                assertTrue(again.awaitCaughtUp(WAIT));
                String base = again.url();
                assertEquals(List.of(RUN), again.state().runIds(), "runs.max=1 holds at the catch-up too");
                JsonArray runsAfter = new JsonArray(call(http, "GET", base + "/api/runs", null, null, null).body());
                assertEquals(1, runsAfter.size(), runsAfter.encode());
                assertEquals(RUN, runsAfter.getJsonObject(0).getString("run_id"));
                assertEquals(e2.keptPairs(), again.state().layer(RUN, LAYER).orElseThrow().keptPairs(), "kept pairs from the history");
                assertError(call(http, "POST", base + "/api/runs/" + RUN + "/edits", TOKEN, "application/json", "{}"), 403, "no token configured");
                assertError(call(http, "POST", base + "/api/runs/" + RUN + "/refresh", null, null, null), 403, "no token configured");
                JsonObject series = new JsonObject(call(http, "GET", base + "/api/runs/" + RUN + "/signals?layer=fc&name=memorization_gap",
                        null, null, null).body());
                JsonArray pts = series.getJsonArray("series").getJsonObject(0).getJsonArray("points");
                assertTrue(pts.size() >= 3, "gap history rebuilt: " + pts.encode());
                assertEquals(e2.gap(), pts.getJsonObject(pts.size() - 1).getDouble("value"), 1e-9);
                assertEquals(e2.rho(), again.state().layer(RUN, LAYER).orElseThrow().calibratedRho(), "calibrated rho from history");
                assertEquals(3, again.state().snapshots(RUN).size(), "k-1, k-2 and the FAILED bad-layer request");
                // the same key through the topic is skipped after the restart; a new one is served once bases are rebuilt
                EditRequest dup = EditRequest.newBuilder().setIdempotencyKey("k-1").setRunId(RUN).setLayers(List.of())
                        .setRequester("it").setCreatedMs(2).build();
                EditRequest k3 = EditRequest.newBuilder(dup).setIdempotencyKey("k-3").build();
                producer.send(new ProducerRecord<>(topics.editRequests(), RUN, encode(EditRequest.class, dup))).get();
                producer.send(new ProducerRecord<>(topics.editRequests(), RUN, encode(EditRequest.class, k3))).get();
                try (Tail snaps = new Tail(bs, topics.snapshots()); Tail sig = new Tail(bs, topics.signals())) {
                    SnapshotEvent ev3 = snaps.await("snapshot k-3", WAIT, r -> {
                        SnapshotEvent x = decode(SnapshotEvent.class, r.value());
                        return x.getIdempotencyKey().equals("k-3") ? x : null;
                    });
                    assertEquals(e2.rho(), ev3.getLayers().get(0).getRho(), "the calibrated rho restored from history");
                    assertEquals(1, snaps.count(r -> decode(SnapshotEvent.class, r.value()).getIdempotencyKey().equals("k-1")));
                    long after = sig.drain().stream().filter(r -> signal(r).getName().equals("effective_rank_g")
                            && signal(r).getFactorVersion() == v2).count();
                    assertEquals(refreshSignalsOfV2, after, "the refresh after the restart is silent: no duplicate signals");
                    assertNotEquals(0, again.state().layer(RUN, LAYER).orElseThrow().refreshes(), "bases were recomputed");
                }
            }
            assertTrue(trainer.failure() == null, String.valueOf(trainer.failure()));
        }
    }
}
