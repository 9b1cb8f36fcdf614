package dev.curvewatch.cli;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.ServiceConfig;
import dev.curvewatch.service.SignalPoint;
import dev.curvewatch.streams.CurvewatchStreams;
import dev.curvewatch.streams.StreamsAppConfig;
import dev.curvewatch.trainer.experiments.Metrics;
import dev.curvewatch.trainer.experiments.Mlp;
import dev.curvewatch.trainer.experiments.NoisyLabelsScorer;
import dev.curvewatch.trainer.experiments.ReportFiles;
import dev.curvewatch.trainer.SnapshotFollower;
import dev.curvewatch.trainer.experiments.WatchedTraining;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.Set;
import java.util.concurrent.Callable;

/**
 * {@code curvewatch demo}: the whole pipeline on an embedded default, every part real. A KRaft
 * broker; a worker, the streams app and the Vert.x service in this process; the DJL trainer
 * fine-tuning the noisy-label MLP on clean labels first and on 10% flipped labels from
 * {@code --inject-at-epoch} on, answering the service's edit candidates and applying the edited
 * snapshots it is sent. The loop it shows: factors → refresh → calibration round trip →
 * memorization gap → alert → streams edit rule → edit request → edited snapshot → the trainer
 * continues from it. Then the worker's factors are checked against the trainer's own, and a final
 * edit is requested through the authenticated REST API and measured. Every number printed is
 * computed in this run.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Run the whole pipeline on an embedded default: broker, worker, streams app, service with dashboard, "
                + "and a watched DJL fine-tune that starts memorizing flipped labels mid-run; alerts, edit requests and "
                + "edited snapshots happen live. Writes results under --data-dir.")
final class DemoCommand implements Callable<Integer> {
    private static final String[] LAYERS = {"fc1", "fc2"};
    private static final int STEPS = 6;

    @Option(names = "--data-dir", defaultValue = "${env:CURVEWATCH_DEMO_DIR:-.curvewatch/demo}",
            description = "Broker data, snapshots and run outputs (env CURVEWATCH_DEMO_DIR; default ${DEFAULT-VALUE}).")
    Path dataDir;

    @Option(names = "--epochs", defaultValue = "45", description = "Training epochs of 20 steps (default ${DEFAULT-VALUE}).")
    int epochs;

    @Option(names = "--inject-at-epoch", defaultValue = "15",
            description = "First epoch trained on the flipped labels (default ${DEFAULT-VALUE}); before it, the true labels.")
    int injectAt;

    @Option(names = "--run-id", description = "Run id (default demo-<time>).")
    String runId;

    @Option(names = "--http-port", defaultValue = "${env:CURVEWATCH_DEMO_HTTP_PORT:-8080}",
            description = "Port of the service's API and dashboard (0 = any free port; default ${DEFAULT-VALUE}).")
    int httpPort;

    @Option(names = "--token", defaultValue = "${env:CURVEWATCH_DEMO_TOKEN}",
            description = "Bearer token of the service's edit endpoints (env CURVEWATCH_DEMO_TOKEN; default: a random one, printed).")
    String token;

    @Option(names = "--refresh-interval-ms", defaultValue = "1500",
            description = "Shortest time between two refreshes of a layer (default ${DEFAULT-VALUE}).")
    long refreshIntervalMs;

    @Option(names = "--tolerance", defaultValue = "0.01",
            description = "Largest held-out probe accuracy loss a calibrated edit may cost (default ${DEFAULT-VALUE}).")
    double tolerance;

    @Option(names = "--factor-timeout-s", defaultValue = "180",
            description = "How long to wait for the worker's checkpoints to cover every published token.")
    int factorTimeoutS;

    @Option(names = "--service-set", description = "Another setting of the embedded service as key=value (repeatable; keys in "
            + "service/README.md), e.g. --service-set candidate.part.max.bytes=262144.")
    Map<String, String> serviceExtra = new LinkedHashMap<>();

    @Option(names = "--keep-running", description = "Keep broker, worker, streams app and service (dashboard) up until Ctrl-C.")
    boolean keepRunning;

    @Option(names = "--control", description = "The clean control: the same run on the true labels throughout, the guard on; "
            + "it must make no edit and raise no alert. No final REST edit.")
    boolean control;

    @Override
    public Integer call() throws Exception {
        if (injectAt < 1 || injectAt >= epochs) {
            System.err.println("curvewatch demo: --inject-at-epoch must be in [1, --epochs), got " + injectAt);
            return 2;
        }
        try {
            ServiceConfig.of(serviceExtra); // a bad key or value is a usage error, before anything starts
        } catch (IllegalArgumentException bad) {
            System.err.println("curvewatch demo: --service-set: " + bad.getMessage());
            return 2;
        }
        String run = runId != null ? runId : "demo-" + System.currentTimeMillis();
        String bearer = token != null && !token.isBlank() ? token : randomToken();
        Path runDir = dataDir.resolve("runs").resolve(run);
        Path snapshotDir = dataDir.resolve("snapshots").toAbsolutePath();
        Files.createDirectories(runDir);
        Files.createDirectories(snapshotDir);
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("run_id", run);
        long started = System.nanoTime();

        step(1, "starting a KRaft Kafka broker in " + dataDir.resolve("broker").toAbsolutePath());
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dataDir.resolve("broker")).start()) {
            String bootstrap = kafka.bootstrapServers();
            System.out.println("      bootstrap=" + bootstrap + " (log " + kafka.logFile() + ")");

            step(2, "starting a worker (exactly-once factor checkpoints every 1 s), the streams app and the service");
            try (Worker worker = Worker.start(WorkerConfig.of(workerConfig(bootstrap)));
                 CurvewatchStreams streamsApp = CurvewatchStreams.start(StreamsAppConfig.of(streamsConfig(bootstrap)),
                         Duration.ofSeconds(120));
                 CurvewatchService service = CurvewatchService.start(ServiceConfig.of(serviceConfig(bootstrap, bearer, snapshotDir)))) {
                service.awaitCaughtUp(Duration.ofSeconds(60));
                System.out.println("      worker metrics http://127.0.0.1:" + worker.metricsPort() + "/metrics; streams app "
                        + streamsApp.state());
                System.out.println("      dashboard " + service.url() + "/  (API " + service.url() + "/api, token " + bearer + ")");

                step(3, control ? "training the MLP on the true labels for all " + epochs + " epochs: the clean control, guard on (run "
                        + run + ")" : "training the MLP: true labels for " + injectAt + " epochs, then 10% flipped labels, guard on (run "
                        + run + ")");
                DemoLiveLog live = new DemoLiveLog(service, run, List.of(LAYERS), injectAt, epochs);
                WatchedTraining.Config tc = WatchedTraining.memorizationRun(run, bootstrap, epochs, injectAt)
                        .withNoiseInjectedAt(control ? epochs : injectAt)
                        .followingSnapshots(snapshotDir, true)
                        .saving(runDir.resolve("weights.safetensors"), runDir.resolve("trainer-factors.safetensors"));
                Map<String, Object> trained = new WatchedTraining(tc, System.out, live::epoch).observe(live).run();
                summary.put("training", trained);
                summary.put("control", control);

                step(4, "reading the worker's factor checkpoints back from Kafka and checking them against the trainer's");
                Map<String, Long> expected = expectedTokens(trained);
                Map<String, FactorCheckpoint> factors = awaitFactors(bootstrap, kafka, run, expected);
                if (factors == null) {
                    System.err.println("curvewatch demo: the worker's checkpoints did not cover the " + expected
                            + " published tokens within " + factorTimeoutS + " s; worker phase " + worker.phase()
                            + (worker.failure() == null ? "" : ", failure: " + worker.failure()));
                    return 1;
                }
                summary.put("factors", compareAndSummarise(factors, runDir.resolve("trainer-factors.safetensors")));
                summary.put("registry", registered(streamsApp, run));

                step(5, "what the live loop and the guard did (service signals, alerts de-duplicated by the streams app, guard "
                        + "decisions, snapshots)");
                live.printDecisions();
                Map<String, Object> loop = DemoLoop.loop(service, run, List.of(LAYERS), (long) injectAt * tc.stepsPerEpoch(), live,
                        WatchedTraining.data(tc).flipped());
                Map<String, Double> finalModel = finalModel(tc, runDir);
                summary.put("final_model", finalModel);
                loop.put("guard", DemoLoop.guard(service, run, live, control ? epochs : injectAt, finalModel));
                loop.put("guard_state_in_streams", streamsApp.guardStates());
                loop.put("dead_letters_by_topic_and_reason", streamsApp.deadLetterCounts());
                loop.put("dead_letters_from_service", service.state().deadLetters());
                System.out.println("      dead letters (all components, counted by the streams app): " + streamsApp.deadLetterCounts());
                summary.put("loop", loop);

                if (control) {
                    step(6, "the clean control makes no edit, so no final REST edit either");
                } else {
                    step(6, "a final edit requested through the authenticated REST API, measured on the final model");
                    summary.put("final_edit", finalEdit(service, run, bearer, tc, runDir));
                }
                summary.put("seconds", (System.nanoTime() - started) / 1e9);
                ReportFiles.json().writeValue(runDir.resolve("summary.json").toFile(), summary);
                System.out.println("      wrote " + runDir.resolve("summary.json"));
                if (keepRunning) {
                    // the hook closes everything itself, newest first: the JVM halts once hooks return
                    UntilStopped stop = UntilStopped.watch("demo", () -> {
                        service.close();
                        streamsApp.close();
                        worker.close();
                        kafka.close();
                    });
                    System.out.println("broker " + bootstrap + ", worker, streams app and service stay up; dashboard "
                            + service.url() + "/ ; Ctrl-C to stop");
                    stop.await();
                }
            }
        }
        return 0;
    }

    private static void step(int n, String what) {
        System.out.printf("[%d/%d] %s%n", n, STEPS, what);
        System.out.flush();
    }

    private static String randomToken() {
        byte[] b = new byte[16];
        new SecureRandom().nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    private static Map<String, String> workerConfig(String bootstrap) {
        Map<String, String> wc = new LinkedHashMap<>();
        wc.put(WorkerConfig.BOOTSTRAP, bootstrap);
        wc.put(WorkerConfig.INSTANCE_ID, "demo-worker");
        wc.put(WorkerConfig.CHECKPOINT_INTERVAL_MS, "1000");
        wc.put(WorkerConfig.METRICS_PORT, "0");
        return wc;
    }

    private Map<String, String> streamsConfig(String bootstrap) {
        Map<String, String> sc = new LinkedHashMap<>();
        sc.put(StreamsAppConfig.BOOTSTRAP, bootstrap);
        sc.put(StreamsAppConfig.APPLICATION_ID, "curvewatch-demo-streams");
        sc.put(StreamsAppConfig.STATE_DIR, dataDir.resolve("streams-state").toAbsolutePath().toString());
        sc.put(StreamsAppConfig.RESOLVE_HOLD_MS, "5000"); // a short run: resolutions show within it
        return sc;
    }

    private Map<String, String> serviceConfig(String bootstrap, String bearer, Path snapshotDir) {
        Map<String, String> c = new LinkedHashMap<>();
        c.put(ServiceConfig.BOOTSTRAP, bootstrap);
        c.put(ServiceConfig.INSTANCE_ID, "demo");
        c.put(ServiceConfig.HTTP_PORT, Integer.toString(httpPort));
        c.put(ServiceConfig.AUTH_TOKENS, bearer);
        c.put(ServiceConfig.SNAPSHOT_DIR, snapshotDir.toString());
        c.put(ServiceConfig.REFRESH_INTERVAL_MS, Long.toString(refreshIntervalMs));
        c.put(ServiceConfig.CALIBRATION_TOLERANCE, Double.toString(tolerance));
        c.putAll(serviceExtra);
        return c;
    }

    /**
     * POSTs an edit of the layer whose latest calibrated edit keeps the most probe accuracy (the
     * service's own signals; never the flipped set), waits for its snapshot, and scores the final
     * model with that layer replaced by the snapshot's weight.
     */
    private Map<String, Object> finalEdit(CurvewatchService service, String run, String bearer, WatchedTraining.Config tc,
                                          Path runDir) throws IOException, InterruptedException {
        Map<String, Object> out = new LinkedHashMap<>();
        String layer = null;
        double bestAcc = Double.NEGATIVE_INFINITY;
        for (String l : LAYERS) {
            OptionalDouble acc = service.state().latest(run, l, "probe_accuracy_edited");
            OptionalDouble rho = service.state().latest(run, l, "calibrated_rho");
            if (acc.isPresent() && rho.isPresent() && rho.getAsDouble() < 1 && acc.getAsDouble() > bestAcc) {
                bestAcc = acc.getAsDouble();
                layer = l;
            }
        }
        if (layer == null) {
            System.out.println("      no layer has a calibrated edit (rho < 1): nothing to request");
            return out;
        }
        String key = "demo-final-" + run;
        String body = "{\"layers\":[{\"layer\":\"" + layer + "\"}],\"reason\":\"demo: final edit\",\"idempotency_key\":\"" + key + "\"}";
        HttpClient http = HttpClient.newHttpClient();
        HttpRequest.Builder post = HttpRequest.newBuilder(URI.create(service.url() + "/api/runs/" + run + "/edits"))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        int unauthenticated = http.send(post.build(), HttpResponse.BodyHandlers.discarding()).statusCode();
        HttpResponse<String> accepted = http.send(post.header("Authorization", "Bearer " + bearer).build(),
                HttpResponse.BodyHandlers.ofString());
        System.out.printf("      POST /api/runs/%s/edits {%s, calibrated rho}: without the token %d, with it %d %s%n", run, layer,
                unauthenticated, accepted.statusCode(), accepted.body());
        out.put("layer", layer);
        out.put("status_without_token", unauthenticated);
        out.put("status_with_token", accepted.statusCode());
        if (accepted.statusCode() != 202) {
            return out;
        }
        SnapshotEvent snap = null;
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (snap == null && System.nanoTime() < deadline) {
            snap = service.state().snapshots(run).stream().filter(e -> key.equals(e.getIdempotencyKey())).findFirst().orElse(null);
            if (snap == null) {
                Thread.sleep(200);
            }
        }
        if (snap == null) {
            System.out.println("      no snapshot for " + key + " within 90 s");
            return out;
        }
        Path file = service.config().snapshotDir().resolve(snap.getUri()).normalize();
        out.put("snapshot_id", snap.getSnapshotId());
        out.put("snapshot_step", snap.getStep());
        out.put("rho", DemoLoop.rhos(snap).get(layer));
        out.put("sha256", snap.getSha256());
        int index = List.of(LAYERS).indexOf(layer);
        try (Mlp mlp = WatchedTraining.model(tc); SafetensorsFile f = SafetensorsFile.open(file)) {
            WatchedTraining.loadWeights(mlp, runDir.resolve("weights.safetensors"));
            NoisyLabelsScorer scorer = new NoisyLabelsScorer(mlp, WatchedTraining.data(tc));
            Map<String, Double> before = scorer.evaluate(null, -1);
            Map<String, Double> after = scorer.evaluate(f.readFloat32(layer + ".weight"), index);
            out.put("before", before);
            out.put("after", after);
            System.out.printf("      snapshot %s: %s at rho %.5f, weights of step %d (sha256 %s…)%n", snap.getSnapshotId(), layer,
                    DemoLoop.rhos(snap).get(layer), snap.getStep(), snap.getSha256().substring(0, 12));
            System.out.println("                                   final model   + snapshot");
            for (String k : before.keySet()) {
                System.out.printf("      %-28s %8.4f %12.4f%n", k, before.get(k), after.get(k));
            }
        }
        return out;
    }

    /** The saved final weights scored on the run's data (what the run ends with, after the guard's last look). */
    private static Map<String, Double> finalModel(WatchedTraining.Config tc, Path runDir) throws IOException {
        try (Mlp mlp = WatchedTraining.model(tc)) {
            WatchedTraining.loadWeights(mlp, runDir.resolve("weights.safetensors"));
            return new NoisyLabelsScorer(mlp, WatchedTraining.data(tc)).evaluate(null, -1);
        }
    }

    /** The run as the streams app's registry holds it (read back through an interactive query). */
    private static Map<String, Object> registered(CurvewatchStreams app, String run) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        RunInfo info = null;
        while (info == null && System.nanoTime() < deadline) {
            try {
                info = app.runs().get(run);
            } catch (RuntimeException rebalancing) {
                // the store is briefly unavailable while the app (re)assigns its tasks
            }
            if (info == null) {
                Thread.sleep(200);
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        if (info == null) {
            System.out.println("      run registry (streams app): " + run + " not registered within 30 s");
            return out;
        }
        List<String> layers = new ArrayList<>();
        for (LayerInfo l : info.getLayers()) {
            layers.add(l.getName() + " " + l.getDOut() + "x" + l.getDIn());
        }
        out.put("model", info.getModel());
        out.put("source", info.getSource());
        out.put("status", info.getStatus().toString());
        out.put("layers", layers);
        out.put("dead_letters", app.deadLetterCounts());
        System.out.printf("      run registry (streams app): %s, model %s from %s (%s), layers %s; dead letters %s%n", run,
                info.getModel(), info.getSource(), info.getStatus(), layers, app.deadLetterCounts());
        return out;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Long> expectedTokens(Map<String, Object> trained) {
        Map<String, Object> spectra = (Map<String, Object>) trained.get("spectra");
        Map<String, Long> tokens = new LinkedHashMap<>();
        for (String layer : LAYERS) {
            tokens.put(layer, ((Number) ((Map<String, Object>) spectra.get(layer)).get("tokens")).longValue());
        }
        return tokens;
    }

    /** Polls the factors topic until each layer's latest manifest covers the published tokens; null on timeout. */
    private Map<String, FactorCheckpoint> awaitFactors(String bootstrap, LocalKafka kafka, String run,
                                                       Map<String, Long> expected) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(factorTimeoutS).toNanos();
        Map<String, FactorCheckpoint> byLayer = new LinkedHashMap<>();
        while (System.nanoTime() < deadline) {
            byLayer.clear();
            try {
                // the scan may take the time left (the whole topic, every version, on a loaded machine): a fixed 10 s threw
                for (FactorCheckpoint cp : FactorCheckpoints.readLatest(KafkaClientSettings.forBootstrap(bootstrap),
                        kafka.topics(), Duration.ofNanos(Math.max(1_000_000_000L, deadline - System.nanoTime()))).values()) {
                    if (cp.runId().equals(run)) {
                        byLayer.put(cp.layer(), cp);
                    }
                }
            } catch (org.apache.kafka.common.errors.TimeoutException slow) {
                // a loaded machine: the worker is still writing; try again until the deadline
                System.out.println("      (factors topic not read to its end yet: " + slow.getMessage() + "; trying again)");
            }
            boolean complete = true;
            for (Map.Entry<String, Long> e : expected.entrySet()) {
                FactorCheckpoint cp = byLayer.get(e.getKey());
                complete &= cp != null && cp.tokenCount() == e.getValue();
            }
            if (complete) {
                return byLayer;
            }
            Thread.sleep(1000);
        }
        return null;
    }

    /** Worker factors vs the trainer's in-process ones (same captures, so equal up to rounding), plus spectra. */
    private static Map<String, Object> compareAndSummarise(Map<String, FactorCheckpoint> factors, Path trainerFactors)
            throws IOException {
        Map<String, Object> out = new LinkedHashMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(trainerFactors)) {
            for (String layer : LAYERS) {
                FactorCheckpoint cp = factors.get(layer);
                double[] a = cp.meanA();
                double[] g = cp.meanG();
                double errA = relativeError(a, f.readAsDoubles(layer + ".A"));
                double errG = relativeError(g, f.readAsDoubles(layer + ".G"));
                SpectrumSummary sa = SpectrumSummary.of(SymmetricEigensolvers.best()
                        .decompose(a, (int) Math.round(Math.sqrt(a.length)), Precision.FLOAT64).orThrow().values());
                SpectrumSummary sg = SpectrumSummary.of(SymmetricEigensolvers.best()
                        .decompose(g, (int) Math.round(Math.sqrt(g.length)), Precision.FLOAT64).orThrow().values());
                System.out.printf("      %s: checkpoint v%d, %d tokens; vs trainer's in-process factors: "
                        + "rel. error A %.2e, G %.2e%n", layer, cp.version(), cp.tokenCount(), errA, errG);
                System.out.printf("        A: %s%n        G: %s%n", sa, sg);
                Map<String, Object> l = new LinkedHashMap<>();
                l.put("version", cp.version());
                l.put("tokens", cp.tokenCount());
                l.put("relative_error_A_vs_trainer", errA);
                l.put("relative_error_G_vs_trainer", errG);
                l.put("spectrum_A", sa);
                l.put("spectrum_G", sg);
                out.put(layer, l);
            }
        }
        return out;
    }

    /** ‖x − y‖_F / ‖y‖_F. */
    static double relativeError(double[] x, double[] y) {
        if (x.length != y.length) {
            return Double.POSITIVE_INFINITY;
        }
        double num = 0;
        double den = 0;
        for (int i = 0; i < x.length; i++) {
            double d = x[i] - y[i];
            num += d * d;
            den += y[i] * y[i];
        }
        return Math.sqrt(num / den);
    }
}
