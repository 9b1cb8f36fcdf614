package dev.curvewatch.trainer;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.EditSensitivity;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.ExampleScores;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
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

    static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz .=0123456789";
    static final int V = ALPHABET.length();

    public record Config(long seed, int canaries, int secretLength, int repeats, int context, int hidden,
                         int corpusChars, int heldOutChars, int epochs, float lr, double maxPerplexityRise) {

        public static Config full(long seed) {
            return new Config(seed, 20, 10, 33, 8, 512, 60000, 10000, 30, 1e-3f, 0.05);
        }

        public static Config small(long seed) {
            return new Config(seed, 10, 10, 25, 8, 256, 20000, 5000, 25, 2e-3f, 0.05);
        }
    }

    private final Config config;
    private final PrintStream progress;

    public CanariesExperiment(Config config, PrintStream progress) {
        this.config = config;
        this.progress = progress;
    }

    /** One-hot windows and next-character targets of a text. */
    private record Positions(int n, float[] x, int[] y, boolean[] canary) {
    }

    public Map<String, Object> run() {
        long started = System.nanoTime();
        Config c = config;
        Random random = new Random(c.seed());
        List<String> lexicon = new ArrayList<>();
        for (int i = 0; i < 300; i++) {
            int len = 2 + random.nextInt(6);
            StringBuilder w = new StringBuilder();
            for (int k = 0; k < len; k++) {
                w.append((char) ('a' + random.nextInt(26)));
            }
            lexicon.add(w.toString());
        }
        String[] secrets = new String[c.canaries()];
        String[] prefixes = new String[c.canaries()];
        String secretChars = "abcdefghijklmnopqrstuvwxyz0123456789";
        for (int k = 0; k < c.canaries(); k++) {
            StringBuilder s = new StringBuilder();
            for (int i = 0; i < c.secretLength(); i++) {
                s.append(secretChars.charAt(random.nextInt(secretChars.length())));
            }
            secrets[k] = s.toString();
            prefixes[k] = String.format("canary%02d=", k);
        }
        // training text: sentences with canaries inserted at random sentence boundaries
        List<String> insertions = new ArrayList<>();
        for (int k = 0; k < c.canaries(); k++) {
            for (int r = 0; r < c.repeats(); r++) {
                insertions.add(prefixes[k] + secrets[k] + ". ");
            }
        }
        java.util.Collections.shuffle(insertions, random);
        StringBuilder train = new StringBuilder(" ".repeat(c.context()));
        List<int[]> canarySpans = new ArrayList<>();
        int sentences = 0;
        int inserted = 0;
        while (train.length() < c.corpusChars() || inserted < insertions.size()) {
            train.append(sentence(lexicon, random));
            sentences++;
            if (inserted < insertions.size() && random.nextDouble() < 0.3) {
                String ins = insertions.get(inserted++);
                int secretStart = train.length() + prefixes[0].length();
                canarySpans.add(new int[] {secretStart, secretStart + c.secretLength()});
                train.append(ins);
            }
        }
        StringBuilder held = new StringBuilder(" ".repeat(c.context()));
        while (held.length() < c.heldOutChars()) {
            held.append(sentence(lexicon, random));
        }
        Positions tr = positions(train.toString(), canarySpans);
        Positions ho = positions(held.toString(), List.of());
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("experiment", "canaries");
        out.put("config", c);
        out.put("train_chars", train.length());
        out.put("canary_positions", countTrue(tr.canary()));
        progress.printf("corpus: %d training chars (%d sentences), %d canaries x %d, %d held-out chars%n",
                train.length(), sentences, c.canaries(), c.repeats(), held.length());
        try (Mlp mlp = new Mlp(c.seed() + 1, c.context() * V, c.hidden(), c.hidden(), V)) {
            trainLm(mlp, tr);
            Map<String, Object> before = evaluate(mlp, ho, prefixes, secrets, null, -1);
            out.put("before", before);
            progress.printf("before: %s%n", before);
            double baseLoss = meanLoss(mlp, ho, null, -1);
            SymmetricEigensolver solver = SymmetricEigensolvers.best();
            Map<Integer, FactorAccumulator[]> factors = fisherFactors(mlp, tr, new int[] {0, 1}, new Random(c.seed() + 5));
            List<Map<String, Object>> layers = new ArrayList<>();
            int chosen = -1;
            double chosenRho = Double.NaN;
            double bestGap = Double.NEGATIVE_INFINITY;
            CurvatureEdit chosenEdit = null;
            for (int layer : new int[] {0, 1}) {
                FactorAccumulator[] ag = factors.get(layer);
                Eigenbasis a = solver.decompose(ag[0].mean(), ag[0].dim(), Precision.FLOAT64).orThrow();
                Eigenbasis g = solver.decompose(ag[1].mean(), ag[1].dim(), Precision.FLOAT64).orThrow();
                CurvatureEdit edit = new CurvatureEdit(g, a);
                float[] w = mlp.weight(layer);
                int l = layer;
                RhoCalibration cal = RhoCalibrator.standard(Math.log1p(c.maxPerplexityRise()),
                        RhoCalibrator.Direction.LOWER_IS_BETTER)
                        .calibrate(baseLoss, rho -> meanLoss(mlp, ho, edit.apply(w, edit.select(rho)), l));
                Map<String, Object> lr = new LinkedHashMap<>();
                lr.put("layer", Mlp.layerName(layer));
                lr.put("spectrum_A", SpectrumSummary.of(a.values()));
                lr.put("spectrum_G", SpectrumSummary.of(g.values()));
                lr.put("calibration_trace", cal.trace());
                if (cal.rho().isPresent()) {
                    double rho = cal.rho().getAsDouble();
                    float[] edited = edit.apply(w, edit.select(rho));
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
            float[] edited = chosenEdit.apply(w, chosenEdit.select(chosenRho));
            Map<String, Object> after = evaluate(mlp, ho, prefixes, secrets, edited, chosen);
            out.put("after", after);
            progress.printf("after editing %s at rho=%.6f: %s%n", Mlp.layerName(chosen), chosenRho, after);
            out.put("detection", detection(mlp, tr, chosen, w, edited, new Random(c.seed() + 9)));
        }
        out.put("seconds", (System.nanoTime() - started) / 1e9);
        return out;
    }

    private static String sentence(List<String> lexicon, Random random) {
        int words = 4 + random.nextInt(8);
        StringBuilder s = new StringBuilder();
        int prev = random.nextInt(lexicon.size());
        for (int i = 0; i < words; i++) {
            // Zipf-like, with a weak bigram preference so the text has learnable structure
            int idx = random.nextDouble() < 0.5 ? (prev * 7 + 3) % lexicon.size()
                    : (int) Math.min(lexicon.size() - 1, Math.floor(Math.exp(random.nextDouble() * Math.log(lexicon.size()))));
            s.append(lexicon.get(idx)).append(i == words - 1 ? ". " : " ");
            prev = idx;
        }
        return s.toString();
    }

    private Positions positions(String text, List<int[]> canarySpans) {
        int k = config.context();
        int n = text.length() - k;
        float[] x = new float[n * k * V];
        int[] y = new int[n];
        boolean[] canary = new boolean[n];
        for (int p = 0; p < n; p++) {
            for (int j = 0; j < k; j++) {
                x[(p * k + j) * V + ALPHABET.indexOf(text.charAt(p + j))] = 1f;
            }
            y[p] = ALPHABET.indexOf(text.charAt(p + k));
        }
        for (int[] span : canarySpans) {
            for (int t = span[0]; t < span[1]; t++) {
                canary[t - k] = true; // position p predicts text[p + k]
            }
        }
        return new Positions(n, x, y, canary);
    }

    private void trainLm(Mlp mlp, Positions tr) {
        Config c = config;
        Random random = new Random(c.seed() + 2);
        int d = c.context() * V;
        int[] order = new int[tr.n()];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        for (int epoch = 0; epoch < c.epochs(); epoch++) {
            for (int i = order.length - 1; i > 0; i--) {
                int j = random.nextInt(i + 1);
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
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
                mlp.adam(r, c.lr());
                loss += r.loss();
                batches++;
            }
            progress.printf("epoch %d/%d train loss %.4f%n", epoch + 1, c.epochs(), loss / batches);
        }
    }

    private Map<Integer, FactorAccumulator[]> fisherFactors(Mlp mlp, Positions tr, int[] layers, Random random) {
        Map<Integer, FactorAccumulator[]> acc = new LinkedHashMap<>();
        Set<Integer> capture = new java.util.HashSet<>();
        for (int l : layers) {
            acc.put(l, new FactorAccumulator[] {FactorAccumulator.cumulative(mlp.inDim(l), Precision.FLOAT64),
                    FactorAccumulator.cumulative(mlp.outDim(l), Precision.FLOAT64)});
            capture.add(l);
        }
        int d = config.context() * V;
        for (int start = 0; start < tr.n(); start += 1000) {
            int m = Math.min(1000, tr.n() - start);
            float[] x = new float[m * d];
            System.arraycopy(tr.x(), start * d, x, 0, m * d);
            float[] logits = mlp.logits(x, m);
            int[] sampled = new int[m];
            for (int i = 0; i < m; i++) {
                sampled[i] = sample(logits, i * V, random);
            }
            for (LayerCapture cap : mlp.forwardBackward(x, sampled, m, capture).captures()) {
                acc.get(cap.layer())[0].add(start, cap.a(), m);
                acc.get(cap.layer())[1].add(start, cap.g(), m);
            }
        }
        return acc;
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

    /** Canary secret positions vs a random sample of other training positions. */
    private Map<String, Object> detection(Mlp mlp, Positions tr, int layer, float[] w, float[] edited, Random random) {
        List<Integer> idx = new ArrayList<>();
        for (int p = 0; p < tr.n(); p++) {
            if (tr.canary()[p] || random.nextDouble() < 0.1) {
                idx.add(p);
            }
        }
        int m = idx.size();
        int d = config.context() * V;
        float[] x = new float[m * d];
        int[] y = new int[m];
        boolean[] positive = new boolean[m];
        long[] ids = new long[m];
        for (int i = 0; i < m; i++) {
            System.arraycopy(tr.x(), idx.get(i) * d, x, i * d, d);
            y[i] = tr.y()[idx.get(i)];
            positive[i] = tr.canary()[idx.get(i)];
            ids[i] = i;
        }
        double[] now = Metrics.crossEntropy(mlp.logits(x, m), y, V);
        double[] after = Metrics.crossEntropy(mlp.logits(x, m, edited, layer), y, V);
        double[] exact = new double[m];
        for (int i = 0; i < m; i++) {
            exact[i] = after[i] - now[i];
        }
        LayerCapture cap = mlp.forwardBackward(x, y, m, Set.of(layer)).captures().get(0);
        double[] wd = new double[w.length];
        double[] ed = new double[w.length];
        for (int i = 0; i < w.length; i++) {
            wd[i] = w[i];
            ed[i] = edited[i];
        }
        ExampleScores fo = new EditSensitivity().firstOrder(wd, ed, cap.dOut(), cap.dIn(), cap.a(), cap.g(), ids);
        double[] first = new double[m];
        for (int i = 0; i < m; i++) {
            first[i] = fo.scoreOf(i);
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("positions", m);
        r.put("canary_positions", countTrue(positive));
        r.put("auroc_exact_edit_sensitivity", Metrics.auroc(exact, positive));
        r.put("auroc_first_order", Metrics.auroc(first, positive));
        // low loss = memorized: the baseline ranks by negative loss
        double[] negLoss = new double[m];
        for (int i = 0; i < m; i++) {
            negLoss[i] = -now[i];
        }
        r.put("auroc_loss_baseline", Metrics.auroc(negLoss, positive));
        progress.printf("detection AUROC (canary secret chars vs other positions): exact %.4f first-order %.4f "
                        + "loss %.4f%n", r.get("auroc_exact_edit_sensitivity"), r.get("auroc_first_order"),
                r.get("auroc_loss_baseline"));
        return r;
    }

    private static int countTrue(boolean[] b) {
        int c = 0;
        for (boolean v : b) {
            c += v ? 1 : 0;
        }
        return c;
    }

    private static int sample(float[] logits, int offset, Random random) {
        double max = Double.NEGATIVE_INFINITY;
        for (int c = 0; c < V; c++) {
            max = Math.max(max, logits[offset + c]);
        }
        double[] p = new double[V];
        double sum = 0;
        for (int c = 0; c < V; c++) {
            p[c] = Math.exp(logits[offset + c] - max);
            sum += p[c];
        }
        double u = random.nextDouble() * sum;
        for (int c = 0; c < V; c++) {
            u -= p[c];
            if (u <= 0) {
                return c;
            }
        }
        return V - 1;
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
