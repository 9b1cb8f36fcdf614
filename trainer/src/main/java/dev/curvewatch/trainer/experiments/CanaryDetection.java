package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.experiments.CanaryCorpus.Positions;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static dev.curvewatch.trainer.experiments.CanaryCorpus.V;

/** How well edit sensitivity tells the canaries from ordinary text, per secret and per character (AUROC). */
final class CanaryDetection {
    private final CanariesExperiment.Config config;
    private final PrintStream progress;

    CanaryDetection(CanariesExperiment.Config config, PrintStream progress) {
        this.config = config;
        this.progress = progress;
    }

    /**
     * Detection at two granularities. Per example (what DESIGN §6 asks: an LM's example is a
     * sequence): each canary's secret (its first occurrence; all occurrences have the same
     * contexts) vs 2000 random secret-length spans of ordinary training text, scored by the sum
     * over the span's positions. Per position: canary secret characters vs a 10% sample of the
     * other training positions.
     */
    Map<String, Object> detect(Mlp mlp, Positions tr, List<int[]> canarySpans, int layer, float[] w,
                                          float[] edited, Random random) {
        int k = config.context();
        int len = config.secretLength();
        // spans as position ranges [start, start + len): position p predicts text[p + k]
        List<int[]> spans = new ArrayList<>();
        List<Boolean> spanIsCanary = new ArrayList<>();
        java.util.Set<String> seen = new java.util.HashSet<>();
        for (int[] span : canarySpans) {
            int start = span[0] - k;
            String key = java.util.Arrays.toString(java.util.Arrays.copyOfRange(tr.y(), start, start + len));
            if (seen.add(key)) {
                spans.add(new int[] {start, start + len});
                spanIsCanary.add(true);
            }
        }
        for (int tries = 0; spans.size() - seen.size() < 2000 && tries < 100_000; tries++) {
            int start = random.nextInt(tr.n() - len);
            boolean clean = true;
            for (int p = start; p < start + len && clean; p++) {
                clean = !tr.canary()[p];
            }
            if (clean) {
                spans.add(new int[] {start, start + len});
                spanIsCanary.add(false);
            }
        }
        java.util.TreeSet<Integer> chosen = new java.util.TreeSet<>();
        List<Integer> sampled = new ArrayList<>();
        for (int p = 0; p < tr.n(); p++) {
            if (tr.canary()[p] || random.nextDouble() < 0.1) {
                sampled.add(p);
            }
        }
        chosen.addAll(sampled);
        for (int[] span : spans) {
            for (int p = span[0]; p < span[1]; p++) {
                chosen.add(p);
            }
        }
        List<Integer> idx = new ArrayList<>(chosen);
        Map<Integer, Integer> row = new java.util.HashMap<>();
        for (int i = 0; i < idx.size(); i++) {
            row.put(idx.get(i), i);
        }
        int m = idx.size();
        int d = k * V;
        float[] x = new float[m * d];
        int[] y = new int[m];
        for (int i = 0; i < m; i++) {
            System.arraycopy(tr.x(), idx.get(i) * d, x, i * d, d);
            y[i] = tr.y()[idx.get(i)];
        }
        double[] now = Metrics.crossEntropy(mlp.logits(x, m), y, V);
        double[] after = Metrics.crossEntropy(mlp.logits(x, m, edited, layer), y, V);
        double[] exact = new double[m];
        for (int i = 0; i < m; i++) {
            exact[i] = after[i] - now[i];
        }
        double[] first = mlp.forwardBackward(x, y, m, Set.of(layer)).captures().get(0).firstOrderEditScores(w, edited);
        Map<String, Object> r = new LinkedHashMap<>();
        // per example: sums over each span's positions; low loss = memorized, so the baseline is -loss
        int s = spans.size();
        double[][] perSpan = new double[3][s];
        boolean[] spanPositive = new boolean[s];
        for (int j = 0; j < s; j++) {
            spanPositive[j] = spanIsCanary.get(j);
            for (int p = spans.get(j)[0]; p < spans.get(j)[1]; p++) {
                int i = row.get(p);
                perSpan[0][j] += exact[i];
                perSpan[1][j] += first[i];
                perSpan[2][j] -= now[i];
            }
        }
        r.put("examples", s);
        r.put("canary_examples", Metrics.countTrue(spanPositive));
        r.put("auroc_exact_edit_sensitivity", Metrics.auroc(perSpan[0], spanPositive));
        r.put("auroc_first_order", Metrics.auroc(perSpan[1], spanPositive));
        r.put("auroc_loss_baseline", Metrics.auroc(perSpan[2], spanPositive));
        r.put("roc_exact", Metrics.roc(perSpan[0], spanPositive));
        r.put("roc_first_order", Metrics.roc(perSpan[1], spanPositive));
        r.put("roc_loss", Metrics.roc(perSpan[2], spanPositive));
        r.put("scores_exact", perSpan[0]);
        r.put("canary", spanPositive);
        // per position
        int q = sampled.size();
        double[][] perPos = new double[3][q];
        boolean[] positive = new boolean[q];
        for (int j = 0; j < q; j++) {
            int i = row.get(sampled.get(j));
            positive[j] = tr.canary()[sampled.get(j)];
            perPos[0][j] = exact[i];
            perPos[1][j] = first[i];
            perPos[2][j] = -now[i];
        }
        Map<String, Object> pp = new LinkedHashMap<>();
        pp.put("positions", q);
        pp.put("canary_positions", Metrics.countTrue(positive));
        pp.put("auroc_exact_edit_sensitivity", Metrics.auroc(perPos[0], positive));
        pp.put("auroc_first_order", Metrics.auroc(perPos[1], positive));
        pp.put("auroc_loss_baseline", Metrics.auroc(perPos[2], positive));
        r.put("per_position", pp);
        progress.printf("detection AUROC per example (%d canary secrets vs %d clean spans): exact %.4f first-order %.4f "
                        + "loss %.4f; per position: exact %.4f first-order %.4f loss %.4f%n",
                r.get("canary_examples"), s - (int) r.get("canary_examples"), r.get("auroc_exact_edit_sensitivity"),
                r.get("auroc_first_order"), r.get("auroc_loss_baseline"), pp.get("auroc_exact_edit_sensitivity"),
                pp.get("auroc_first_order"), pp.get("auroc_loss_baseline"));
        return r;
    }

}
