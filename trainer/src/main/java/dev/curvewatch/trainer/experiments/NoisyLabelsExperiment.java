package dev.curvewatch.trainer.experiments;


import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;

/**
 * The paper's noisy-label experiment in miniature (DESIGN §6): an MLP fits 10% flipped labels;
 * K-FAC factors from labels sampled on the fitted model (true Fisher, DESIGN §3); per hidden
 * layer, ρ is calibrated on held-out probes (most aggressive 1−ρ on the log grid 0.4 … 1e-5 that
 * keeps probe accuracy within {@code tolerance}); the layer whose calibrated edit scores best on
 * the probes is edited. The flipped set is only used to measure, never to choose.
 */
public final class NoisyLabelsExperiment {

    public record Config(long seed, double noise, int dim, int classes, double separation, int nTrain, int nTest,
                         int nProbes, int hidden, int epochs, int batch, float lr, double tolerance,
                         int overheadSteps) {

        /** Full size: 512-wide hidden layers as in the DESIGN §3 study. */
        public static Config full(long seed, double noise) {
            return new Config(seed, noise, 32, 10, 1.0, 2000, 2000, 500, 512, 150, 100, 1e-3f, 0.01, 40);
        }

        /** CI size. */
        public static Config small(long seed, double noise) {
            return new Config(seed, noise, 32, 10, 1.0, 2000, 1000, 500, 256, 80, 100, 2e-3f, 0.01, 10);
        }
    }

    private final Config config;
    private final PrintStream progress;

    /**
     * {@code java -cp ... dev.curvewatch.trainer.NoisyLabelsExperiment [seed] [noise] [full|small] [out.json]}:
     * the same run as {@code curvewatch experiment noisy-labels}, for use before the cli is wired.
     */
    public static void main(String[] args) throws java.io.IOException {
        long seed = args.length > 0 ? Long.parseLong(args[0]) : 1;
        double noise = args.length > 1 ? Double.parseDouble(args[1]) : 0.1;
        Config config = args.length > 2 && args[2].equals("small") ? Config.small(seed, noise) : Config.full(seed, noise);
        java.nio.file.Path json = java.nio.file.Path.of(args.length > 3 ? args[3] : "noisy-labels.json");
        Map<String, Object> result = new NoisyLabelsExperiment(config, System.out).run();
        System.out.println("report: " + NoisyLabelsReport.write(result, json,
                "NoisyLabelsExperiment " + String.join(" ", args)));
    }

    public NoisyLabelsExperiment(Config config, PrintStream progress) {
        this.config = config;
        this.progress = progress;
    }

    public Map<String, Object> run() {
        long started = System.nanoTime();
        Config c = config;
        NoisyLabelData data = NoisyLabelData.generate(c.seed(), c.dim(), c.classes(), c.separation(), c.nTrain(),
                c.nTest(), c.nProbes(), c.noise());
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("experiment", "noisy-labels");
        out.put("config", c);
        out.put("flipped_count", data.flippedCount());
        try (Mlp mlp = new Mlp(c.seed() + 1, c.dim(), c.hidden(), c.hidden(), c.classes())) {
            out.put("training_curve", train(mlp, data));
            NoisyLabelsScorer scorer = new NoisyLabelsScorer(mlp, data);
            Map<String, Double> before = scorer.evaluate(null, -1);
            out.put("before", before);
            progress.printf("fitted: %s%n", before);

            SymmetricEigensolver solver = SymmetricEigensolvers.best();
            int[] candidateLayers = {0, 1}; // hidden layers only: the output edit destroyed the model (DESIGN §3)
            Map<Integer, SampledFisher.Factors> factors = SampledFisher.factors(mlp, data.train().x(), data.train().n(),
                    c.dim(), c.classes(), 500, List.of(0, 1), new Random(c.seed() + 3));
            List<Map<String, Object>> layerReports = new ArrayList<>();
            List<NoisyLabelsScorer.LayerEdit> edits = new ArrayList<>();
            double baselineProbeAcc = scorer.probeAccuracy(null, -1);
            for (int layer : candidateLayers) {
                SampledFisher.Bases bases = factors.get(layer).decompose(solver);
                NoisyLabelsScorer.LayerEdit le = scorer.calibrate(layer, bases.edit(), c.tolerance());
                edits.add(le);
                Map<String, Object> lr = new LinkedHashMap<>();
                lr.put("layer", Mlp.layerName(layer));
                lr.put("spectrum_A", SpectrumSummary.of(bases.a().values()));
                lr.put("spectrum_G", SpectrumSummary.of(bases.g().values()));
                lr.put("calibration_trace", le.calibration().trace());
                if (le.found()) {
                    lr.put("calibrated_rho", le.mask().rho());
                    lr.put("kept_pairs", le.mask().keptPairs());
                    lr.put("total_pairs", (long) le.mask().rows() * le.mask().columns());
                    lr.put("probe_accuracy", le.probeAccuracy());
                    lr.put("probe_loss", le.probeLoss());
                }
                progress.printf("layer %s: calibrated rho %s, G mass in 50/90/99%%: %s%n", Mlp.layerName(layer),
                        le.calibration().rho(), lr.get("spectrum_G"));
                layerReports.add(lr);
            }
            out.put("baseline_probe_accuracy", baselineProbeAcc);
            out.put("layers", layerReports);
            Optional<NoisyLabelsScorer.LayerEdit> choice = NoisyLabelsScorer.best(edits);
            if (choice.isEmpty()) {
                out.put("chosen_layer", null);
                progress.println("no layer has an edit within tolerance: nothing edited");
                return out;
            }
            int chosen = choice.get().layer();
            double chosenRho = choice.get().mask().rho();
            out.put("chosen_layer", Mlp.layerName(chosen));
            out.put("chosen_rho", chosenRho);
            float[] w = mlp.weight(chosen);
            float[] edited = choice.get().edited();
            Map<String, Double> after = scorer.evaluate(edited, chosen);
            out.put("after", after);
            progress.printf("edited %s at rho=%.6f: %s%n", Mlp.layerName(chosen), chosenRho, after);
            out.put("detection", detection(mlp, data, chosen, w, edited));
            out.put("capture_overhead", captureOverhead(c));
        }
        out.put("seconds", (System.nanoTime() - started) / 1e9);
        return out;
    }

    private List<Map<String, Double>> train(Mlp mlp, NoisyLabelData data) {
        Config c = config;
        Random random = new Random(c.seed() + 2);
        int n = data.train().n();
        int[] order = new int[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        List<Map<String, Double>> curve = new ArrayList<>();
        for (int epoch = 0; epoch < c.epochs(); epoch++) {
            Metrics.shuffle(order, random);
            double lossSum = 0;
            int batches = 0;
            for (int start = 0; start < n; start += c.batch()) {
                int m = Math.min(c.batch(), n - start);
                float[] x = new float[m * c.dim()];
                int[] y = new int[m];
                for (int k = 0; k < m; k++) {
                    int idx = order[start + k];
                    System.arraycopy(data.train().x(), idx * c.dim(), x, k * c.dim(), c.dim());
                    y[k] = data.trainLabels()[idx];
                }
                Mlp.StepResult r = mlp.forwardBackward(x, y, m, Set.of());
                mlp.adam(r, c.lr());
                lossSum += r.loss();
                batches++;
            }
            if ((epoch + 1) % 10 == 0 || epoch == c.epochs() - 1) {
                int[] pred = Metrics.argmax(mlp.logits(data.train().x(), n), n, c.classes());
                Map<String, Double> point = new LinkedHashMap<>();
                point.put("epoch", (double) epoch + 1);
                point.put("train_loss", lossSum / batches);
                point.put("flipped_memorized", Metrics.agreement(pred, data.trainLabels(), data.flipped(), true));
                curve.add(point);
                progress.printf("epoch %d/%d loss %.4f flipped memorized %.3f%n", epoch + 1, c.epochs(),
                        lossSum / batches, point.get("flipped_memorized"));
            }
        }
        return curve;
    }

    private Map<String, Object> detection(Mlp mlp, NoisyLabelData data, int layer, float[] w, float[] edited) {
        int k = config.classes();
        NoisyLabelData.Split tr = data.train();
        int n = tr.n();
        double[] lossNow = Metrics.crossEntropy(mlp.logits(tr.x(), n), data.trainLabels(), k);
        double[] lossEdited = Metrics.crossEntropy(mlp.logits(tr.x(), n, edited, layer), data.trainLabels(), k);
        double[] exact = new double[n];
        for (int i = 0; i < n; i++) {
            exact[i] = lossEdited[i] - lossNow[i];
        }
        // first-order score from a capture with the data labels (what the trainer publishes)
        Mlp.StepResult r = mlp.forwardBackward(tr.x(), data.trainLabels(), n, Set.of(layer));
        double[] firstOrder = r.captures().get(0).firstOrderEditScores(w, edited);
        NoisyLabelData.Split p = data.probes();
        double[] probeNow = Metrics.crossEntropy(mlp.logits(p.x(), p.n()), p.y(), k);
        double[] probeEdited = Metrics.crossEntropy(mlp.logits(p.x(), p.n(), edited, layer), p.y(), k);
        double probeSens = 0;
        for (int i = 0; i < p.n(); i++) {
            probeSens += probeEdited[i] - probeNow[i];
        }
        probeSens /= p.n();
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("auroc_exact_edit_sensitivity", Metrics.auroc(exact, data.flipped()));
        d.put("auroc_first_order", Metrics.auroc(firstOrder, data.flipped()));
        d.put("auroc_loss_baseline", Metrics.auroc(lossNow, data.flipped()));
        d.put("train_edit_sensitivity_mean", Metrics.mean(exact));
        d.put("probe_edit_sensitivity_mean", probeSens);
        d.put("memorization_gap", Metrics.mean(exact) - probeSens);
        d.put("roc_exact", Metrics.roc(exact, data.flipped()));
        d.put("roc_first_order", Metrics.roc(firstOrder, data.flipped()));
        d.put("roc_loss", Metrics.roc(lossNow, data.flipped()));
        d.put("scores_exact", exact);
        d.put("flipped", data.flipped());
        progress.printf("detection AUROC: exact %.4f first-order %.4f loss %.4f, gap %.4f nats%n",
                d.get("auroc_exact_edit_sensitivity"), d.get("auroc_first_order"), d.get("auroc_loss_baseline"),
                d.get("memorization_gap"));
        return d;
    }

    /**
     * Median training-step time (forward, backward, Adam) with and without capture of both hidden
     * layers, interleaved, the order alternating per pair so neither variant always runs first.
     */
    public Map<String, Object> captureOverhead(Config c) {
        Map<String, Object> m = new LinkedHashMap<>();
        NoisyLabelData data = NoisyLabelData.generate(c.seed() + 7, c.dim(), c.classes(), c.separation(), c.batch(),
                1, 1, c.noise());
        try (Mlp mlp = new Mlp(c.seed() + 8, c.dim(), c.hidden(), c.hidden(), c.classes())) {
            int steps = c.overheadSteps();
            long[] plain = new long[steps];
            long[] captured = new long[steps];
            for (int s = 0; s < steps + 3; s++) { // first 3 are warm-up, then interleaved
                boolean captureFirst = s % 2 == 1;
                long t0 = System.nanoTime();
                timedStep(mlp, data, c, captureFirst);
                long t1 = System.nanoTime();
                timedStep(mlp, data, c, !captureFirst);
                long t2 = System.nanoTime();
                if (s >= 3) {
                    plain[s - 3] = captureFirst ? t2 - t1 : t1 - t0;
                    captured[s - 3] = captureFirst ? t1 - t0 : t2 - t1;
                }
            }
            java.util.Arrays.sort(plain);
            java.util.Arrays.sort(captured);
            double p = plain[steps / 2] / 1e6;
            double q = captured[steps / 2] / 1e6;
            m.put("batch", c.batch());
            m.put("steps", steps);
            m.put("median_step_ms_without_capture", p);
            m.put("median_step_ms_with_capture", q);
            m.put("overhead_fraction", q / p - 1);
            progress.printf("capture overhead: %.3f ms -> %.3f ms per step (%.1f%%)%n", p, q, 100 * (q / p - 1));
        }
        return m;
    }

    private static void timedStep(Mlp mlp, NoisyLabelData data, Config c, boolean capture) {
        Set<Integer> layers = capture ? Set.of(0, 1) : Set.of();
        Mlp.StepResult r = mlp.forwardBackward(data.train().x(), data.trainLabels(), c.batch(), layers);
        mlp.adam(r, 1e-4f);
    }
}
