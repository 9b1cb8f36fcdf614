package dev.curvewatch.service;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.RunStatus;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.testkit.Await;
import dev.curvewatch.trainer.testing.TrainerSimulator;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Predicate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The dashboard in a real headless Chromium against the real service on a real KRaft broker:
 * seeds the topics with Avro records before the service starts (it reads the signals history at
 * start-up): a run with a hostile model name, gap/ρ/drift signal points, alerts on
 * {@code curvewatch.alerts} (one with a hostile summary and sample id), a snapshot event and its
 * file. One more layer, {@code head}, goes through the real pipeline while the page is built: captures
 * -> a real worker's factors -> the service's refresh (spectra, drift) -> an EditCandidate answered
 * by {@link TinyTrainer} -> calibrated ρ, gap and EXACT scores computed by the service. Then it runs
 * {@code node dashboard.spec.mjs} (service/src/test/browser), publishes a new alert
 * when the script says it is waiting for one, and asserts that the script passed. Skipped only when
 * Chromium or the script's node_modules are missing (deploy/scripts/install-prereqs.sh installs
 * both). Screenshots: target/dashboard-browser/.
 */
@Tag("integration")
class DashboardBrowserIT {
    private static final CurvewatchTopics T = CurvewatchTopics.withDefaultPrefix();
    private static final String HOSTILE = "<img src=x onerror=window.__xss=1>";
    private static final String RUN = "dash-run-1";
    private static final String CONTROL_RUN = "dash-control-2";
    private static final String TOKEN = "dashboard-it-token-" + Long.toHexString(System.nanoTime());
    private static final int STEPS = 30;
    /** The layer fed through worker, refresh and calibration (TinyTrainer's 8 -> 4 classifier). */
    private static final String LIVE_LAYER = "head";
    private static final int TOKENS_PER_CAPTURE = 16;
    private static final Duration SCRIPT_TIMEOUT = Duration.ofMinutes(5);

    private final Path moduleDir = Path.of(System.getProperty("basedir", ".")).toAbsolutePath();
    private final Path browserDir = moduleDir.resolve("src/test/browser");
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @Test
    void dashboardInHeadlessChromium(@TempDir Path dir) throws Exception {
        Path chromium = Path.of(System.getenv().getOrDefault("CURVEWATCH_CHROMIUM", "/usr/bin/chromium"));
        assumeTrue(Files.isExecutable(chromium), chromium + " is missing: deploy/scripts/install-prereqs.sh installs Debian's chromium");
        assumeTrue(Files.isDirectory(browserDir.resolve("node_modules/playwright-core")),
                "service/src/test/browser/node_modules is missing: npm ci --prefix service/src/test/browser (install-prereqs.sh does it)");
        Path out = moduleDir.resolve("target/dashboard-browser");
        Files.createDirectories(out);
        Path snapshots = dir.resolve("snapshots");
        long now = System.currentTimeMillis();

        TinyTrainer model = new TinyTrainer(11);
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             KafkaProducer<String, byte[]> producer = producer(kafka.bootstrapServers())) {
            seed(producer, snapshots, now, model);
            ServiceConfig config = ServiceConfig.of(Map.of(
                    ServiceConfig.BOOTSTRAP, kafka.bootstrapServers(),
                    ServiceConfig.HTTP_PORT, "0",
                    ServiceConfig.AUTH_TOKENS, TOKEN,
                    ServiceConfig.SNAPSHOT_DIR, snapshots.toString(),
                    ServiceConfig.REFRESH_INTERVAL_MS, "200",
                    ServiceConfig.POLL_TIMEOUT_MS, "100",
                    ServiceConfig.INSTANCE_ID, "dashboard-it",
                    // a shared host's setting: every read needs the token, so the page must ask for it and send it
                    ServiceConfig.AUTH_READ_REQUIRED, "true"));
            try (Worker worker = Worker.start(WorkerConfig.of(Map.of(WorkerConfig.BOOTSTRAP, kafka.bootstrapServers(),
                         WorkerConfig.INSTANCE_ID, "dashboard-it-worker", "checkpoint.interval.ms", "500", "poll.timeout.ms", "100")));
                 TrainerSimulator trainer = new TrainerSimulator(kafka.bootstrapServers(), T, RUN);
                 CurvewatchService service = CurvewatchService.start(config)) {
                trainer.answerCandidates(c -> c.getLayer().equals(LIVE_LAYER), c -> model.answer(c, 0.01).result());
                publishCaptures(trainer);
                String base = "http://127.0.0.1:" + service.httpPort();
                awaitApi(base + "/api/runs", b -> b.contains("\"" + RUN + "\"") && b.contains("\"" + CONTROL_RUN + "\""), "both runs listed");
                awaitApi(base + "/api/runs/" + RUN + "/signals?layer=fc2&name=memorization_gap&limit=5000",
                        b -> count(b, "\"step\"") == STEPS, STEPS + " gap points of fc2");
                awaitApi(base + "/api/alerts?run=" + RUN, b -> count(b, "\"fingerprint\"") == 2, "the 2 seeded alerts");
                awaitApi(base + "/api/runs/" + RUN + "/snapshots", b -> b.contains("\"snap-dash-1\""), "the seeded snapshot");
                awaitApi(base + "/api/runs/" + RUN + "/spectra?layer=" + LIVE_LAYER, b -> b.contains("\"g\""), "spectra of the refreshed layer");
                awaitApi(base + "/api/runs/" + RUN + "/scores?layer=" + LIVE_LAYER + "&kind=EXACT&top=20", b -> b.contains("\"sample_id\""),
                        "EXACT scores of the calibrated layer");
                assertTrue(!trainer.answered().isEmpty() && trainer.failure() == null, "the trainer answered a candidate: " + trainer.failure());
                runScript(base, out.resolve("dashboard.png"), producer, now);
            }
        }
    }

    private void runScript(String base, Path png, KafkaProducer<String, byte[]> producer, long now) throws Exception {
        String liveId = "live-" + Long.toHexString(System.nanoTime());
        List<String> command = List.of("node", "dashboard.spec.mjs", base, TOKEN, png.toString(), "--read-required", "--run", RUN, "--layer", "fc2", "--edit-layer", LIVE_LAYER,
                "--alert-timeout-s", "60", "--live-alert-id", liveId, "--check-download");
        Process p = new ProcessBuilder(command).directory(browserDir.toFile()).redirectErrorStream(true).start();
        List<String> lines = Collections.synchronizedList(new ArrayList<>());
        AtomicReference<Exception> publishFailure = new AtomicReference<>();
        AtomicReference<String> published = new AtomicReference<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    lines.add(line);
                    System.out.println("[dashboard.spec] " + line);
                    if (line.startsWith("WAITING_FOR_ALERT")) {
                        try {
                            published.set(publishLiveAlert(producer, liveId, now));
                        } catch (Exception e) {
                            publishFailure.set(e);
                        }
                    }
                }
            } catch (IOException e) {
                publishFailure.compareAndSet(null, e);
            }
        }, "dashboard-spec-output");
        reader.setDaemon(true);
        reader.start();
        try {
            if (!p.waitFor(SCRIPT_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
                throw new AssertionError("dashboard.spec.mjs did not finish within " + SCRIPT_TIMEOUT.toSeconds() + " s:\n" + String.join("\n", lines));
            }
        } finally {
            // never leave node or its Chromium behind (a timeout, an interrupted build)
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            if (p.isAlive()) {
                p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
            reader.join(10_000);
        }
        if (publishFailure.get() != null) {
            throw new AssertionError("publishing the live alert failed", publishFailure.get());
        }
        String output = String.join("\n", lines);
        assertEquals(0, p.exitValue(), "dashboard.spec.mjs failed (screenshot " + png + "):\n" + output);
        assertNotNull(published.get(), "the script never asked for the live alert:\n" + output);
        assertTrue(output.contains("ALERT_SEEN id=" + published.get()), "the page did not show the published alert " + published.get() + ":\n" + output);
        assertTrue(Files.size(png) > 10_000, "screenshot " + png + " looks empty");
    }

    // ------------------------------------------------------------------ seeding

    private static void seed(KafkaProducer<String, byte[]> producer, Path snapshotDir, long now, TinyTrainer model) throws Exception {
        long t0 = now - 3_600_000;
        RunInfo run = RunInfo.newBuilder().setRunId(RUN).setModel(HOSTILE).setSource("djl-trainer").setCreatedMs(t0)
                .setStatus(RunStatus.RUNNING).setWeightsEvery(10)
                .setFisher(FisherKind.SAMPLED)
                .setLayers(List.of(new LayerInfo("fc1", 16, 32, false, true), new LayerInfo("fc2", 32, 8, false, true),
                        new LayerInfo(LIVE_LAYER, TinyTrainer.D_IN, TinyTrainer.D_OUT, false, true))).build();
        RunInfo control = RunInfo.newBuilder().setRunId(CONTROL_RUN).setModel("mlp-32 clean control").setSource("pytorch-client")
                .setCreatedMs(t0 - 86_400_000L).setStatus(RunStatus.FINISHED)
                .setLayers(List.of(new LayerInfo("fc1", 16, 32, false, true))).build();
        send(producer, T.runs(), RUN, run);
        send(producer, T.runs(), CONTROL_RUN, control);

        for (String layer : List.of("fc1", "fc2")) {
            double onset = layer.equals("fc2") ? 150 : 230;
            for (int i = 1; i <= STEPS; i++) {
                long step = i * 10L;
                double gap = 0.01 + 0.004 * Math.sin(i) + (step >= onset ? 0.5 * (1 - Math.exp(-(step - onset) / 50.0)) : 0);
                double oneMinusRho = Math.pow(10, -1 - Math.min(3, i / 8));
                String key = CurvewatchTopics.runLayerKey(RUN, layer);
                send(producer, T.signals(), key, signal(layer, step, "memorization_gap", gap, t0 + step * 10_000));
                send(producer, T.signals(), key, signal(layer, step, "calibrated_rho", 1 - oneMinusRho, t0 + step * 10_000));
                if (i > 1) {
                    send(producer, T.signals(), key, signal(layer, step, "basis_drift_g", 0.3 * Math.exp(-step / 80.0), t0 + step * 10_000));
                    send(producer, T.signals(), key, signal(layer, step, "basis_drift_a", 0.1 * Math.exp(-step / 60.0), t0 + step * 10_000));
                }
            }
        }
        List<ExampleScore> top = List.of(new ExampleScore(HOSTILE, 2.5), new ExampleScore("train-1037", 2.1));
        send(producer, T.alerts(), fingerprint(RUN, "fc2", "gap-jump"), alert("seed-1", "fc2", "gap-jump", 160, 0.21, 0.07,
                Severity.CRITICAL, AlertStatus.FIRING, t0 + 1_600_000, t0 + 3_000_000, HOSTILE, top));
        send(producer, T.alerts(), fingerprint(RUN, "fc1", "gap-high"), alert("seed-2", "fc1", "gap-high", 90, 0.27, 0.25,
                Severity.WARNING, AlertStatus.RESOLVED, t0 + 800_000, t0 + 1_000_000, "gap back under 0.25 on fc1", List.of()));

        send(producer, T.weights(), CurvewatchTopics.runLayerKey(RUN, LIVE_LAYER), WeightSnapshot.newBuilder().setRunId(RUN)
                .setLayer(LIVE_LAYER).setStep(STEPS * 10L).setWeight(TensorCodec.ofFloats(model.w, TinyTrainer.D_OUT, TinyTrainer.D_IN))
                .setBias(TensorCodec.ofFloats(model.bias, TinyTrainer.D_OUT)).setTimestampMs(now).build());

        byte[] file = "{\"__metadata__\":{\"curvewatch.run_id\":\"dash-run-1\"}}".getBytes(StandardCharsets.UTF_8);
        Path path = snapshotDir.resolve(RUN).resolve("snap-dash-1.safetensors");
        Files.createDirectories(path.getParent());
        Files.write(path, file);
        send(producer, T.snapshots(), RUN, SnapshotEvent.newBuilder().setSnapshotId("snap-dash-1").setRunId(RUN).setStep(200)
                .setIdempotencyKey("dashboard-it-seed").setUri(RUN + "/snap-dash-1.safetensors")
                .setSha256(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(file))).setSizeBytes(file.length)
                .setLayers(List.of(new LayerRho("fc2", 0.999))).setFactorVersions(Map.of("fc2", 20L)).setCreatedMs(t0 + 2_000_000).build());
        producer.flush();
    }

    /** Captures of the live layer: inputs and gradients with TinyTrainer's per-coordinate spreads. */
    private static void publishCaptures(TrainerSimulator trainer) {
        for (int i = 0; i < 20; i++) {
            List<String> ids = new ArrayList<>();
            for (int t = 0; t < TOKENS_PER_CAPTURE; t++) {
                ids.add("s" + i + "-" + t);
            }
            trainer.publishCapture(LIVE_LAYER, STEPS * 10L - 20 + i, TrainerSimulator.gaussianRows(new Random(500 + i),
                    TOKENS_PER_CAPTURE, TinyTrainer.INPUT_SD, TinyTrainer.GRAD_SD), ids);
        }
    }

    /** The alert the page must show without reload: a new fingerprint on fc1. */
    private static String publishLiveAlert(KafkaProducer<String, byte[]> producer, String id, long now) throws Exception {
        Alert a = alert(id, "fc1", "gap-high", 300, 0.31, 0.25, Severity.WARNING, AlertStatus.FIRING, now, now,
                "live: gap 0.31 > 0.25 on fc1", List.of(new ExampleScore("train-1111", 1.2)));
        producer.send(new ProducerRecord<>(T.alerts(), a.getFingerprint(), new AvroSerializer<>(Alert.class).serialize(T.alerts(), a))).get();
        System.out.println("[DashboardBrowserIT] published live alert " + id);
        return id;
    }

    private static Signal signal(String layer, long step, String name, double value, long ts) {
        return Signal.newBuilder().setRunId(RUN).setLayer(layer).setStep(step).setName(name).setValue(value)
                .setFactorVersion(step / 10).setTimestampMs(ts).build();
    }

    private static Alert alert(String id, String layer, String rule, long step, double value, double threshold, Severity severity,
                               AlertStatus status, long first, long last, String summary, List<ExampleScore> top) throws Exception {
        return Alert.newBuilder().setId(id).setFingerprint(fingerprint(RUN, layer, rule)).setRunId(RUN).setStep(step).setLayer(layer)
                .setRule(rule).setSignal("memorization_gap").setValue(value).setThreshold(threshold).setSeverity(severity).setStatus(status)
                .setFirstSeenMs(first).setLastSeenMs(last).setSummary(summary).setTopExamples(top)
                .setDetails(Map.of("window_mean", "0.012", "note", HOSTILE)).build();
    }

    /** SERVICE-CONTRACT §3: first 32 hex chars of sha256("run|layer|rule"). */
    private static String fingerprint(String run, String layer, String rule) throws Exception {
        byte[] d = MessageDigest.getInstance("SHA-256").digest((run + "|" + layer + "|" + rule).getBytes(StandardCharsets.UTF_8));
        return HexFormat.of().formatHex(d).substring(0, 32);
    }

    @SuppressWarnings("unchecked")
    private static <R extends SpecificRecord> void send(KafkaProducer<String, byte[]> producer, String topic, String key, R record)
            throws Exception {
        byte[] value = new AvroSerializer<>((Class<R>) record.getClass()).serialize(topic, record);
        producer.send(new ProducerRecord<>(topic, key, value)).get();
    }

    private static KafkaProducer<String, byte[]> producer(String bootstrap) {
        Properties p = KafkaClientSettings.forBootstrap(bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    // ------------------------------------------------------------------ HTTP helpers

    private void awaitApi(String url, Predicate<String> ready, String what) {
        // an I/O failure while the service starts is a state to wait past, not the end of the wait
        Await.until(() -> {
            try {
                HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10))
                        .header("Authorization", "Bearer " + TOKEN).GET().build(), HttpResponse.BodyHandlers.ofString());
                return r.statusCode() + " " + r.body();
            } catch (IOException e) {
                return e.toString();
            }
        }, last -> last.startsWith("200 ") && ready.test(last.substring(4)), Duration.ofSeconds(90), what + " at " + url);
    }

    private static int count(String haystack, String needle) {
        int n = 0;
        for (int i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + needle.length())) {
            n++;
        }
        return n;
    }
}
