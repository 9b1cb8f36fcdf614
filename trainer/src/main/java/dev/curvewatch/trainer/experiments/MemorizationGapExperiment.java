package dev.curvewatch.trainer.experiments;


import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.RhoCalibration;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.TrailingBaseline;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;
import java.util.Random;
import java.util.Set;

/**
 * The memorization gap over training (DESIGN §3 signal 2): at every refresh, factors from sampled
 * labels on the current model, ρ calibrated on probes for the hidden layer fc2, then mean exact
 * edit sensitivity on training examples minus that on probes. Two runs of equal length: a clean
 * control, and a run whose labels are flipped from the middle epoch on. The alert threshold is
 * relative to the run's own recent past ({@link #alertRule}: curvature's {@link TrailingBaseline}
 * over the previous {@code baselineRefreshes} refreshes, mean + max(5 sd, 0.05 nats)).
 */
public final class MemorizationGapExperiment {
    /** The gap alert: a refresh above the mean of the window + max(5 sd, 0.05 nats). */
    static final double ALERT_SDS = 5;
    static final double ALERT_FLOOR_NATS = 0.05;

    public record Config(long seed, double noise, int hidden, int epochs, int refreshEvery, int baselineRefreshes,
                         float lr, double tolerance) {

        public static Config full(long seed, double noise) {
            return new Config(seed, noise, 512, 120, 5, 6, 1e-3f, 0.01);
        }

        public static Config small(long seed, double noise) {
            return new Config(seed, noise, 128, 60, 5, 4, 2e-3f, 0.01);
        }
    }

    private final Config config;
    private final PrintStream progress;

    public MemorizationGapExperiment(Config config, PrintStream progress) {
        this.config = config;
        this.progress = progress;
    }

    public Map<String, Object> run() {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("experiment", "memorization-gap");
        out.put("config", config);
        out.put("clean", run(false));
        out.put("injected", run(true));
        return out;
    }

    private Map<String, Object> run(boolean inject) {
        Config c = config;
        NoisyLabelData data = NoisyLabelData.generate(c.seed(), 32, 10, 1.0, 2000, 1000, 500, c.noise());
        int injectAt = c.epochs() / 2;
        int n = data.train().n();
        Random random = new Random(c.seed() + 2);
        Random sampler = new Random(c.seed() + 3);
        SymmetricEigensolver solver = SymmetricEigensolvers.best();
        List<Map<String, Object>> series = new ArrayList<>();
        int[] order = new int[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        try (Mlp mlp = new Mlp(c.seed() + 1, 32, c.hidden(), c.hidden(), 10)) {
            for (int epoch = 0; epoch < c.epochs(); epoch++) {
                int[] labels = data.labelsForEpoch(epoch, inject ? injectAt : NoisyLabelData.NEVER);
                Metrics.shuffle(order, random);
                for (int start = 0; start < n; start += 100) {
                    int m = Math.min(100, n - start);
                    float[] x = new float[m * 32];
                    int[] y = new int[m];
                    for (int k = 0; k < m; k++) {
                        System.arraycopy(data.train().x(), order[start + k] * 32, x, k * 32, 32);
                        y[k] = labels[order[start + k]];
                    }
                    mlp.adam(mlp.forwardBackward(x, y, m, Set.of()), c.lr());
                }
                if ((epoch + 1) % c.refreshEvery() == 0) {
                    Map<String, Object> point = refresh(mlp, data, labels, solver, sampler);
                    point.put("epoch", epoch + 1);
                    int[] pred = Metrics.argmax(mlp.logits(data.train().x(), n), n, 10);
                    point.put("flipped_fitted", Metrics.agreement(pred, data.trainLabels(), data.flipped(), true));
                    series.add(point);
                    progress.printf("%s epoch %d: gap %.4f nats (rho %s), flipped fitted %.3f%n",
                            inject ? "injected" : "clean", epoch + 1, (Double) point.get("gap"), point.get("rho"),
                            (Double) point.get("flipped_fitted"));
                }
            }
        }
        Map<String, Object> alert = alertRule(series, c.baselineRefreshes());
        double threshold = (Double) alert.get("threshold");
        Integer firstAlertEpoch = (Integer) alert.get("first_alert_epoch");
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("inject_at_epoch", inject ? injectAt : null);
        r.put("threshold", threshold);
        r.put("first_alert_epoch", firstAlertEpoch);
        r.put("series", series);
        progress.printf("%s run: threshold %.4f, first alert at epoch %s%n", inject ? "injected" : "clean", threshold,
                firstAlertEpoch);
        return r;
    }

    /**
     * The alert rule of both gap experiments, as a live system can apply it: curvature's
     * {@link TrailingBaseline} (the rule the service's baseline alerts use) with k = 5 and a floor
     * of 0.05 nats, each refresh compared with the {@code window} refreshes just before it. A
     * trailing baseline follows the slow rise of the gap while a model fits its training data
     * (clearly visible in the LM) and alerts on the jump that memorization causes. Every refresh
     * enters the window, alerting or not (the service leaves out values seen while it fires; the
     * first alert is the same either way, see {@link TrailingBaseline}). Adds each point's
     * "threshold" to the series; returns first_alert_epoch (null: none) and threshold (the one in
     * force at the alert, else at the last refresh).
     */
    static Map<String, Object> alertRule(List<Map<String, Object>> series, int window) {
        TrailingBaseline baseline = new TrailingBaseline(window, ALERT_SDS, ALERT_FLOOR_NATS);
        Integer firstAlertEpoch = null;
        double threshold = Double.NaN;
        for (Map<String, Object> point : series) {
            double gap = (Double) point.get("gap");
            OptionalDouble t = baseline.threshold();
            if (t.isPresent()) {
                point.put("threshold", t.getAsDouble());
                if (firstAlertEpoch == null) {
                    threshold = t.getAsDouble();
                    if (baseline.exceeds(gap)) {
                        firstAlertEpoch = (Integer) point.get("epoch");
                    }
                }
            }
            baseline.admit(gap);
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("threshold", threshold);
        r.put("first_alert_epoch", firstAlertEpoch);
        return r;
    }

    private Map<String, Object> refresh(Mlp mlp, NoisyLabelData data, int[] labels, SymmetricEigensolver solver,
                                        Random sampler) {
        int layer = 1;
        CurvatureEdit edit = SampledFisher.factors(mlp, data.train().x(), data.train().n(), 32, 10, 500, List.of(layer),
                sampler).get(layer).edit(solver);
        // C = U_Gᵀ W U_A once: the ρ the calibration tries change only the mask
        CurvatureEdit.Coordinates coordinates = edit.coordinates(mlp.weight(layer));
        NoisyLabelData.Split p = data.probes();
        double baseAcc = accuracy(mlp.logits(p.x(), p.n()), p.y());
        RhoCalibration cal = RhoCalibrator.standard(config.tolerance(), RhoCalibrator.Direction.HIGHER_IS_BETTER)
                .calibrate(baseAcc, rho -> accuracy(
                        mlp.logits(p.x(), p.n(), edit.applyFloat32(coordinates, edit.select(rho)), layer), p.y()));
        Map<String, Object> point = new LinkedHashMap<>();
        double rho = cal.rho().orElse(1.0);
        point.put("rho", rho);
        float[] edited = edit.applyFloat32(coordinates, edit.select(rho));
        double train = sensitivity(mlp, data.train().x(), labels, edited, layer);
        double probe = sensitivity(mlp, p.x(), p.y(), edited, layer);
        point.put("train_sensitivity", train);
        point.put("probe_sensitivity", probe);
        point.put("gap", train - probe);
        return point;
    }

    private static double sensitivity(Mlp mlp, float[] x, int[] y, float[] edited, int layer) {
        int n = y.length;
        double[] now = Metrics.crossEntropy(mlp.logits(x, n), y, 10);
        double[] after = Metrics.crossEntropy(mlp.logits(x, n, edited, layer), y, 10);
        double s = 0;
        for (int i = 0; i < n; i++) {
            s += after[i] - now[i];
        }
        return s / n;
    }

    private static double accuracy(float[] logits, int[] y) {
        return Metrics.agreement(Metrics.argmax(logits, y.length, 10), y, null, true);
    }

    /** {@code MemorizationGapExperiment [seed] [noise] [full|small] [out.json]}. */
    public static void main(String[] args) throws java.io.IOException {
        long seed = args.length > 0 ? Long.parseLong(args[0]) : 1;
        double noise = args.length > 1 ? Double.parseDouble(args[1]) : 0.1;
        Config config = args.length > 2 && args[2].equals("small") ? Config.small(seed, noise) : Config.full(seed, noise);
        java.nio.file.Path json = java.nio.file.Path.of(args.length > 3 ? args[3] : "memorization-gap.json");
        Map<String, Object> r = new MemorizationGapExperiment(config, System.out).run();
        System.out.println("report: " + GapReport.write(r, json, "MemorizationGapExperiment " + String.join(" ", args)));
    }
}
