package dev.curvewatch.cli;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.streams.CurvewatchStreams;
import dev.curvewatch.streams.StreamsAppConfig;
import dev.curvewatch.trainer.Mlp;
import dev.curvewatch.trainer.NoisyLabelsReport;
import dev.curvewatch.trainer.NoisyLabelsScorer;
import dev.curvewatch.trainer.WatchedTraining;
import dev.curvewatch.workers.FactorCheckpoint;
import dev.curvewatch.workers.FactorCheckpoints;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Callable;

/**
 * {@code curvewatch demo}: the pipeline that exists today, on an embedded default. A real KRaft
 * broker, a worker and the streams app in this process, the DJL trainer publishing a noisy-label
 * fine-tune (registered in the streams app's run registry); then the
 * worker's exactly-once factors are read back from Kafka, checked against the trainer's own
 * in-process factors, decomposed, and used for a calibrated keep-mass edit whose effect on the
 * memorized (flipped) labels is measured. Every number printed is computed in this run.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Run the pipeline on an embedded default: broker, worker, watched DJL fine-tune, factors from "
                + "the worker, calibrated edit that removes memorized labels. Writes results under --data-dir.")
final class DemoCommand implements Callable<Integer> {
    private static final String[] LAYERS = {"fc1", "fc2"};

    @Option(names = "--data-dir", defaultValue = "${env:CURVEWATCH_DEMO_DIR:-.curvewatch/demo}",
            description = "Broker data and run outputs (env CURVEWATCH_DEMO_DIR; default ${DEFAULT-VALUE}).")
    Path dataDir;

    @Option(names = "--epochs", defaultValue = "30",
            description = "Training epochs of 20 steps; memorization of the flipped labels needs about 30 (default ${DEFAULT-VALUE}).")
    int epochs;

    @Option(names = "--run-id", description = "Run id (default demo-<time>).")
    String runId;

    @Option(names = "--tolerance", defaultValue = "0.01",
            description = "Largest held-out probe accuracy loss the calibrated edit may cost (default ${DEFAULT-VALUE}).")
    double tolerance;

    @Option(names = "--factor-timeout-s", defaultValue = "180",
            description = "How long to wait for the worker's checkpoints to cover every published token.")
    int factorTimeoutS;

    @Option(names = "--keep-running", description = "Keep broker and worker up after the run until Ctrl-C.")
    boolean keepRunning;

    @Override
    public Integer call() throws Exception {
        String run = runId != null ? runId : "demo-" + System.currentTimeMillis();
        Path runDir = dataDir.resolve("runs").resolve(run);
        Files.createDirectories(runDir);
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("run_id", run);
        long started = System.nanoTime();

        step(1, "starting a KRaft Kafka broker in " + dataDir.resolve("broker").toAbsolutePath());
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dataDir.resolve("broker")).start()) {
            String bootstrap = kafka.bootstrapServers();
            System.out.println("      bootstrap=" + bootstrap + " (log " + kafka.logFile() + ")");

            step(2, "starting a worker (exactly-once checkpoints every 1 s) and the streams app (run registry, alerts, edit rules)");
            Map<String, String> wc = new LinkedHashMap<>();
            wc.put(WorkerConfig.BOOTSTRAP, bootstrap);
            wc.put(WorkerConfig.INSTANCE_ID, "demo-worker");
            wc.put(WorkerConfig.CHECKPOINT_INTERVAL_MS, "1000");
            wc.put(WorkerConfig.METRICS_PORT, "0");
            Map<String, String> sc = new LinkedHashMap<>();
            sc.put(StreamsAppConfig.BOOTSTRAP, bootstrap);
            sc.put(StreamsAppConfig.APPLICATION_ID, "curvewatch-demo-streams");
            sc.put(StreamsAppConfig.STATE_DIR, dataDir.resolve("streams-state").toAbsolutePath().toString());
            try (Worker worker = Worker.start(WorkerConfig.of(wc));
                 CurvewatchStreams streamsApp = CurvewatchStreams.start(StreamsAppConfig.of(sc), Duration.ofSeconds(120))) {
                System.out.println("      worker metrics http://127.0.0.1:" + worker.metricsPort() + "/metrics, health /health;"
                        + " streams app " + streamsApp.state());

                step(3, "training the noisy-label MLP (10% flipped labels) with capture of fc1 and fc2, run " + run);
                WatchedTraining.Config tc = WatchedTraining.noisyLabelsRun(run, bootstrap, epochs)
                        .saving(runDir.resolve("weights.safetensors"), runDir.resolve("trainer-factors.safetensors"));
                Map<String, Object> trained = new WatchedTraining(tc, System.out).run();
                summary.put("training", trained);

                step(4, "reading the worker's factor checkpoints back from Kafka");
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

                step(5, "calibrated keep-mass edit from the worker's factors (held-out probes only)");
                summary.put("edit", edit(tc, factors, runDir));
                summary.put("seconds", (System.nanoTime() - started) / 1e9);
                NoisyLabelsReport.json().writeValue(runDir.resolve("summary.json").toFile(), summary);
                System.out.println("      wrote " + runDir.resolve("summary.json"));
                System.out.println();
                System.out.println("Not built yet (so not shown): the Vert.x service, which would raise alerts from these"
                        + " signals (the streams app would de-duplicate them and turn them into edit requests), make"
                        + " edited snapshots, and serve the REST API, live stream and dashboard.");
                if (keepRunning) {
                    System.out.println("broker " + bootstrap + ", worker and streams app stay up; Ctrl-C to stop");
                    CountDownLatch stop = new CountDownLatch(1);
                    Runtime.getRuntime().addShutdownHook(new Thread(stop::countDown, "demo-stop"));
                    stop.await();
                }
            }
        }
        return 0;
    }

    private static void step(int n, String what) {
        System.out.printf("[%d/5] %s%n", n, what);
        System.out.flush();
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
        out.put("layers", layers);
        out.put("dead_letters", app.deadLetterCounts());
        System.out.printf("      run registry (streams app): %s, model %s from %s, layers %s; dead letters %s%n", run,
                info.getModel(), info.getSource(), layers, app.deadLetterCounts());
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
            for (FactorCheckpoint cp : FactorCheckpoints.readLatest(KafkaClientSettings.forBootstrap(bootstrap),
                    kafka.topics(), Duration.ofSeconds(10)).values()) {
                if (cp.runId().equals(run)) {
                    byLayer.put(cp.layer(), cp);
                }
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

    private Map<String, Object> edit(WatchedTraining.Config tc, Map<String, FactorCheckpoint> factors, Path runDir)
            throws IOException {
        Map<String, Object> out = new LinkedHashMap<>();
        try (Mlp mlp = WatchedTraining.model(tc)) {
            WatchedTraining.loadWeights(mlp, runDir.resolve("weights.safetensors"));
            NoisyLabelsScorer scorer = new NoisyLabelsScorer(mlp, WatchedTraining.data(tc));
            Map<String, Double> before = scorer.evaluate(null, -1);
            List<NoisyLabelsScorer.LayerEdit> edits = new ArrayList<>();
            for (int l = 0; l < LAYERS.length; l++) {
                FactorCheckpoint cp = factors.get(LAYERS[l]);
                Eigenbasis a = SymmetricEigensolvers.best().decompose(cp.meanA(), mlp.inDim(l), Precision.FLOAT64).orThrow();
                Eigenbasis g = SymmetricEigensolvers.best().decompose(cp.meanG(), mlp.outDim(l), Precision.FLOAT64).orThrow();
                NoisyLabelsScorer.LayerEdit e = scorer.calibrate(l, new CurvatureEdit(g, a), tolerance);
                edits.add(e);
                System.out.printf("      %s: %s%n", LAYERS[l], e.found()
                        ? String.format("rho %.4f keeps %d of %d pairs, probe accuracy %.4f", e.mask().rho(),
                        e.mask().keptPairs(), (long) e.mask().rows() * e.mask().columns(), e.probeAccuracy())
                        : "no rho within tolerance");
            }
            Optional<NoisyLabelsScorer.LayerEdit> best = NoisyLabelsScorer.best(edits);
            out.put("before", before);
            if (best.isEmpty()) {
                System.out.println("      no layer has an edit within tolerance: nothing edited");
                return out;
            }
            NoisyLabelsScorer.LayerEdit e = best.get();
            Map<String, Double> after = scorer.evaluate(e.edited(), e.layer());
            out.put("layer", LAYERS[e.layer()]);
            out.put("rho", e.mask().rho());
            out.put("kept_pairs", e.mask().keptPairs());
            out.put("after", after);
            mlp.setWeight(e.layer(), e.edited());
            Path edited = runDir.resolve("edited.safetensors");
            WatchedTraining.saveWeights(mlp, edited, tc.runId(), -1);
            System.out.printf("      edited %s at rho %.4f -> %s%n", LAYERS[e.layer()], e.mask().rho(), edited);
            System.out.println("                                   before    after");
            for (String k : before.keySet()) {
                System.out.printf("      %-28s %8.4f %8.4f%n", k, before.get(k), after.get(k));
            }
        }
        return out;
    }
}
