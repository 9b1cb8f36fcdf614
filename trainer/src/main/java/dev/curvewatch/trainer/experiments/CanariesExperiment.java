package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.experiments.CanaryCorpus.Positions;


import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.RhoCalibration;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static dev.curvewatch.trainer.experiments.CanaryCorpus.ALPHABET;
import static dev.curvewatch.trainer.experiments.CanaryCorpus.V;

/**
 * The paper's LM experiment in miniature (DESIGN §6): a context-window character MLP LM (one-hot
 * window of {@code context} characters -> fc1 -> fc2 -> next character) on generated pseudo-word
 * text with canaries "canaryNN=&lt;secret&gt;. " inserted {@code repeats} times each. Factors from
 * labels sampled on the fitted model; per hidden layer ρ is calibrated on held-out text (mean loss
 * may rise by at most ln(1 + {@code maxPerplexityRise})); among the layers, the edit that moves
 * training loss most (largest train-minus-probe edit sensitivity) is applied. Canary identities
 * are used only to measure.
 */
public final class CanariesExperiment {

    public record Config(long seed, int canaries, int secretLength, int repeats, int context, int hidden,
                         int corpusChars, int heldOutChars, int epochs, float lr, double maxPerplexityRise) {

        public static Config full(long seed) {
            return new Config(seed, 20, 10, 33, 8, 512, 60000, 10000, 30, 1e-3f, 0.05);
        }

        public static Config small(long seed) {
            return new Config(seed, 10, 10, 25, 8, 256, 20000, 5000, 25, 2e-3f, 0.05);
        }
    }

    /** Refresh period (epochs) of the gap experiment at full and CI size, and its baseline length. */
    public static final int GAP_REFRESH_FULL = 3;
    public static final int GAP_REFRESH_SMALL = 2;
    public static final int GAP_BASELINE_REFRESHES = 3;

    private final Config config;
    private final PrintStream progress;
    private final CanaryCorpus generator;
    private final CanaryDetection detection;

    public CanariesExperiment(Config config, PrintStream progress) {
        this.config = config;
        this.progress = progress;
        this.generator = new CanaryCorpus(config);
        this.detection = new CanaryDetection(config, progress);
    }

    public Map<String, Object> run() {
        long started = System.nanoTime();
        Config c = config;
        CanaryCorpus.Text corpus = generator.text();
        List<int[]> canarySpans = corpus.canarySpans();
        String[] prefixes = corpus.prefixes();
        String[] secrets = corpus.secrets();
        String train = corpus.train();
        String held = corpus.heldOut();
        int sentences = corpus.sentences();
        Positions tr = generator.positions(train, canarySpans);
        Positions ho = generator.positions(held, List.of());
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("experiment", "canaries");
        out.put("config", c);
        out.put("train_chars", train.length());
        out.put("canary_positions", Metrics.countTrue(tr.canary()));
        progress.printf("corpus: %d training chars (%d sentences), %d canaries x %d, %d held-out chars%n",
                train.length(), sentences, c.canaries(), c.repeats(), held.length());
        try (Mlp mlp = new Mlp(c.seed() + 1, c.context() * V, c.hidden(), c.hidden(), V)) {
            trainLm(mlp, tr);
            Map<String, Object> before = evaluate(mlp, ho, prefixes, secrets, null, -1);
            out.put("before", before);
            progress.printf("before: %s%n", before);
            double baseLoss = meanLoss(mlp, ho, null, -1);
            SymmetricEigensolver solver = SymmetricEigensolvers.best();
            Map<Integer, SampledFisher.Factors> factors = fisherFactors(mlp, tr, List.of(0, 1), new Random(c.seed() + 5));
            List<Map<String, Object>> layers = new ArrayList<>();
            int chosen = -1;
            double chosenRho = Double.NaN;
            double bestGap = Double.NEGATIVE_INFINITY;
            CurvatureEdit chosenEdit = null;
            CurvatureEdit.Coordinates chosenCoordinates = null;
            for (int layer : new int[] {0, 1}) {
                SampledFisher.Bases bases = factors.get(layer).decompose(solver);
                CurvatureEdit edit = bases.edit();
                // C = U_Gᵀ W U_A once: the ρ the calibration tries change only the mask
                CurvatureEdit.Coordinates coordinates = edit.coordinates(mlp.weight(layer));
                int l = layer;
                RhoCalibration cal = RhoCalibrator.standard(Math.log1p(c.maxPerplexityRise()),
                        RhoCalibrator.Direction.LOWER_IS_BETTER)
                        .calibrate(baseLoss, rho -> meanLoss(mlp, ho, edit.applyFloat32(coordinates, edit.select(rho)), l));
                Map<String, Object> lr = new LinkedHashMap<>();
                lr.put("layer", Mlp.layerName(layer));
                lr.put("spectrum_A", SpectrumSummary.of(bases.a().values()));
                lr.put("spectrum_G", SpectrumSummary.of(bases.g().values()));
                lr.put("calibration_trace", cal.trace());
                if (cal.rho().isPresent()) {
                    double rho = cal.rho().getAsDouble();
                    float[] edited = edit.applyFloat32(coordinates, edit.select(rho));
                    double trainSens = meanLossSample(mlp, tr, edited, layer) - meanLossSample(mlp, tr, null, -1);
                    double probeSens = meanLoss(mlp, ho, edited, layer) - baseLoss;
                    lr.put("calibrated_rho", rho);
                    lr.put("kept_pairs", edit.select(rho).keptPairs());
                    lr.put("train_minus_probe_sensitivity", trainSens - probeSens);
                    if (trainSens - probeSens > bestGap) {
                        bestGap = trainSens - probeSens;
                        chosen = layer;
                        chosenRho = rho;
                        chosenEdit = edit;
                        chosenCoordinates = coordinates;
                    }
                }
                progress.printf("layer %s: calibrated rho %s, gap %s%n", Mlp.layerName(layer), cal.rho(),
                        lr.get("train_minus_probe_sensitivity"));
                layers.add(lr);
            }
            out.put("layers", layers);
            if (chosen < 0) {
                out.put("chosen_layer", null);
                return out;
            }
            out.put("chosen_layer", Mlp.layerName(chosen));
            out.put("chosen_rho", chosenRho);
            float[] w = mlp.weight(chosen);
            float[] edited = chosenEdit.applyFloat32(chosenCoordinates, chosenEdit.select(chosenRho));
            Map<String, Object> after = evaluate(mlp, ho, prefixes, secrets, edited, chosen);
            out.put("after", after);
            progress.printf("after editing %s at rho=%.6f: %s%n", Mlp.layerName(chosen), chosenRho, after);
            out.put("detection", detection.detect(mlp, tr, canarySpans, chosen, w, edited, new Random(c.seed() + 9)));
        }
        out.put("seconds", (System.nanoTime() - started) / 1e9);
        return out;
    }

    private void trainLm(Mlp mlp, Positions tr) {
        Random random = new Random(config.seed() + 2);
        int[] order = identity(tr.n());
        for (int epoch = 0; epoch < config.epochs(); epoch++) {
            double loss = trainEpoch(mlp, tr, order, random);
            progress.printf("epoch %d/%d train loss %.4f%n", epoch + 1, config.epochs(), loss);
        }
    }

    private static int[] identity(int n) {
        int[] order = new int[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        return order;
    }

    /** One epoch of Adam in batches of 128 over {@code order} shuffled in place; returns the mean batch loss. */
    private double trainEpoch(Mlp mlp, Positions tr, int[] order, Random random) {
        int d = config.context() * V;
        Metrics.shuffle(order, random);
        double loss = 0;
        int batches = 0;
        for (int start = 0; start < tr.n(); start += 128) {
            int m = Math.min(128, tr.n() - start);
            float[] x = new float[m * d];
            int[] y = new int[m];
            for (int k = 0; k < m; k++) {
                System.arraycopy(tr.x(), order[start + k] * d, x, k * d, d);
                y[k] = tr.y()[order[start + k]];
            }
            Mlp.StepResult r = mlp.forwardBackward(x, y, m, Set.of());
            mlp.adam(r, config.lr());
            loss += r.loss();
            batches++;
        }
        return loss / batches;
    }

    /**
     * The memorization gap over training for the LM (DESIGN §6): two runs of {@code epochs}
     * epochs, a clean control on the text without canaries, and a run whose training text gains
     * the canaries at the middle epoch. Every {@code refreshEvery} epochs: sampled-label factors of
     * fc1 (the layer the calibration picks at both sizes) on the current training text, ρ
     * calibrated on held-out text within the perplexity budget, gap = mean edit sensitivity on
     * training positions minus on held-out positions. Alert rule as in the noisy-label gap
     * experiment ({@link MemorizationGapExperiment#alertRule}).
     */
    public Map<String, Object> gap(int refreshEvery, int baselineRefreshes) {
        CanaryCorpus.Text corpus = generator.text();
        Positions clean = generator.positions(corpus.clean(), List.of());
        Positions injected = generator.positions(corpus.train(), corpus.canarySpans());
        Positions ho = generator.positions(corpus.heldOut(), List.of());
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("experiment", "canaries-memorization-gap");
        out.put("config", config);
        out.put("refresh_every", refreshEvery);
        out.put("baseline_refreshes", baselineRefreshes);
        out.put("injected_what", "canaries");
        out.put("fitted_key", "canaries_recited");
        out.put("clean", gapRun(false, corpus, clean, injected, ho, refreshEvery, baselineRefreshes));
        out.put("injected", gapRun(true, corpus, clean, injected, ho, refreshEvery, baselineRefreshes));
        return out;
    }

    private Map<String, Object> gapRun(boolean inject, CanaryCorpus.Text corpus, Positions clean, Positions injected,
                                       Positions ho, int refreshEvery, int baselineRefreshes) {
        Config c = config;
        int injectAt = c.epochs() / 2;
        Random random = new Random(c.seed() + 2);
        Random sampler = new Random(c.seed() + 5);
        List<Map<String, Object>> series = new ArrayList<>();
        try (Mlp mlp = new Mlp(c.seed() + 1, c.context() * V, c.hidden(), c.hidden(), V)) {
            Positions current = clean;
            int[] order = identity(clean.n());
            for (int epoch = 0; epoch < c.epochs(); epoch++) {
                if (inject && epoch == injectAt) {
                    current = injected;
                    order = identity(injected.n());
                }
                double loss = trainEpoch(mlp, current, order, random);
                if ((epoch + 1) % refreshEvery == 0) {
                    Map<String, Object> point = gapRefresh(mlp, current, ho, sampler);
                    point.put("epoch", epoch + 1);
                    point.put("train_loss", loss);
                    Map<String, Object> rec = evaluate(mlp, ho, corpus.prefixes(), corpus.secrets(), null, -1);
                    point.put("canaries_recited", rec.get("strict_recitation"));
                    series.add(point);
                    progress.printf("%s epoch %d: gap %.4f nats (rho %.6f), canaries recited %.2f%n",
                            inject ? "injected" : "clean", epoch + 1, (Double) point.get("gap"),
                            (Double) point.get("rho"), (Double) point.get("canaries_recited"));
                }
            }
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("inject_at_epoch", inject ? injectAt : null);
        r.putAll(MemorizationGapExperiment.alertRule(series, baselineRefreshes));
        r.put("series", series);
        progress.printf("%s run: threshold %.4f, first alert at epoch %s%n", inject ? "injected" : "clean",
                (Double) r.get("threshold"), r.get("first_alert_epoch"));
        return r;
    }

    private Map<String, Object> gapRefresh(Mlp mlp, Positions tr, Positions ho, Random sampler) {
        int layer = 0;
        CurvatureEdit edit = fisherFactors(mlp, tr, List.of(layer), sampler).get(layer).edit(SymmetricEigensolvers.best());
        // C = U_Gᵀ W U_A once: the ρ the calibration tries change only the mask
        CurvatureEdit.Coordinates coordinates = edit.coordinates(mlp.weight(layer));
        double baseLoss = meanLoss(mlp, ho, null, -1);
        RhoCalibration cal = RhoCalibrator.standard(Math.log1p(config.maxPerplexityRise()),
                        RhoCalibrator.Direction.LOWER_IS_BETTER)
                .calibrate(baseLoss, rho -> meanLoss(mlp, ho, edit.applyFloat32(coordinates, edit.select(rho)), layer));
        double rho = cal.rho().orElse(1.0);
        float[] edited = edit.applyFloat32(coordinates, edit.select(rho));
        double train = meanLossSample(mlp, tr, edited, layer) - meanLossSample(mlp, tr, null, -1);
        double probe = meanLoss(mlp, ho, edited, layer) - baseLoss;
        Map<String, Object> point = new LinkedHashMap<>();
        point.put("rho", rho);
        point.put("train_sensitivity", train);
        point.put("probe_sensitivity", probe);
        point.put("gap", train - probe);
        return point;
    }

    private Map<Integer, SampledFisher.Factors> fisherFactors(Mlp mlp, Positions tr, List<Integer> layers, Random random) {
        return SampledFisher.factors(mlp, tr.x(), tr.n(), config.context() * V, V, 1000, layers, random);
    }

    private double meanLoss(Mlp mlp, Positions p, float[] edited, int layer) {
        return Metrics.mean(Metrics.crossEntropy(mlp.logits(p.x(), p.n(), edited, layer), p.y(), V));
    }

    /** Mean training loss over every 7th position (a fixed sample, cheap). */
    private double meanLossSample(Mlp mlp, Positions tr, float[] edited, int layer) {
        int d = config.context() * V;
        int m = (tr.n() + 6) / 7;
        float[] x = new float[m * d];
        int[] y = new int[m];
        for (int i = 0; i < m; i++) {
            System.arraycopy(tr.x(), i * 7 * d, x, i * d, d);
            y[i] = tr.y()[i * 7];
        }
        return Metrics.mean(Metrics.crossEntropy(mlp.logits(x, m, edited, layer), y, V));
    }

    private Map<String, Object> evaluate(Mlp mlp, Positions ho, String[] prefixes, String[] secrets, float[] edited,
                                         int layer) {
        int strict = 0;
        int loose = 0;
        List<String> decoded = new ArrayList<>();
        for (int k = 0; k < secrets.length; k++) {
            String ctx = (" " + prefixes[k]).substring(Math.max(0, prefixes[k].length() + 1 - config.context()));
            StringBuilder text = new StringBuilder(ctx);
            for (int i = 0; i < secrets[k].length(); i++) {
                String window = text.substring(text.length() - config.context());
                float[] x = new float[config.context() * V];
                for (int j = 0; j < config.context(); j++) {
                    x[j * V + ALPHABET.indexOf(window.charAt(j))] = 1f;
                }
                float[] logits = mlp.logits(x, 1, edited, layer);
                text.append(ALPHABET.charAt(Metrics.argmax(logits, 1, V)[0]));
            }
            String got = text.substring(ctx.length());
            decoded.add(got);
            strict += got.equals(secrets[k]) ? 1 : 0;
            loose += similarity(got, secrets[k]) >= 0.75 ? 1 : 0;
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("strict_recitation", (double) strict / secrets.length);
        m.put("loose_recitation", (double) loose / secrets.length);
        m.put("held_out_perplexity", Math.exp(meanLoss(mlp, ho, edited, layer)));
        m.put("decoded", decoded);
        return m;
    }

    /** 1 − Levenshtein(a, b) / max(|a|, |b|). */
    static double similarity(String a, String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1));
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        int max = Math.max(a.length(), b.length());
        return max == 0 ? 1 : 1 - (double) prev[b.length()] / max;
    }

    /** {@code CanariesExperiment [seed] [full|small] [out.json]}. */
    public static void main(String[] args) throws java.io.IOException {
        long seed = args.length > 0 ? Long.parseLong(args[0]) : 1;
        Config config = args.length > 1 && args[1].equals("small") ? Config.small(seed) : Config.full(seed);
        java.nio.file.Path json = java.nio.file.Path.of(args.length > 2 ? args[2] : "canaries.json");
        Map<String, Object> r = new CanariesExperiment(config, System.out).run();
        System.out.println("report: " + CanariesReport.write(r, json, "CanariesExperiment " + String.join(" ", args)));
    }
}
