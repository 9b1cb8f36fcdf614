package dev.curvewatch.cli;

import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.ServiceConfig;
import dev.curvewatch.streams.CurvewatchStreams;
import dev.curvewatch.streams.StreamsAppConfig;
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
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
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
                DemoNarration live = new DemoNarration(service, run, List.of(LAYERS));
                DemoTrainingHold hold = new DemoTrainingHold(service, run, List.of(LAYERS), injectAt, epochs, live);
                WatchedTraining.Config tc = WatchedTraining.memorizationRun(run, bootstrap, epochs, injectAt)
                        .withNoiseInjectedAt(control ? epochs : injectAt)
                        .followingSnapshots(snapshotDir, true)
                        .saving(runDir.resolve("weights.safetensors"), runDir.resolve("trainer-factors.safetensors"));
                Map<String, Object> trained = new WatchedTraining(tc, System.out, live::epoch).observe(observer(live, hold)).run();
                summary.put("training", trained);
                summary.put("control", control);

                step(4, "reading the worker's factor checkpoints back from Kafka and checking them against the trainer's");
                DemoFactorCheck check = new DemoFactorCheck(List.of(LAYERS), factorTimeoutS);
                Map<String, Long> expected = check.expectedTokens(trained);
                Map<String, FactorCheckpoint> factors = check.awaitFactors(bootstrap, kafka, run, expected);
                if (factors == null) {
                    System.err.println("curvewatch demo: the worker's checkpoints did not cover the " + expected
                            + " published tokens within " + factorTimeoutS + " s; worker phase " + worker.phase()
                            + (worker.failure() == null ? "" : ", failure: " + worker.failure()));
                    return 1;
                }
                summary.put("factors", check.compareAndSummarise(factors, runDir.resolve("trainer-factors.safetensors")));
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
                    summary.put("final_edit", new DemoFinalEdit(List.of(LAYERS)).request(service, run, bearer, tc, runDir));
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

    /** What the demo does between steps: holds training when {@code hold} says so, narrates the snapshots. */
    private static WatchedTraining.Observer observer(DemoNarration live, DemoTrainingHold hold) {
        return new WatchedTraining.Observer() {
            @Override
            public boolean holdBeforeEpoch(int epoch) {
                return hold.holdBeforeEpoch(epoch);
            }

            @Override
            public void snapshotApplied(SnapshotFollower.Applied a, Mlp model) {
                live.snapshotApplied(a, model);
            }

            @Override
            public void snapshotRefused(String snapshotId, String reason, String message) {
                live.snapshotRefused(snapshotId, reason, message);
            }
        };
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

}
