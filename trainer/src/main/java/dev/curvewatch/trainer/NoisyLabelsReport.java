package dev.curvewatch.trainer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Writes a noisy-labels result as JSON plus a markdown report with PNG plots beside it. */
public final class NoisyLabelsReport {

    private NoisyLabelsReport() {
    }

    public static ObjectMapper json() {
        return new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    }

    /** @return the markdown file written */
    @SuppressWarnings("unchecked")
    public static Path write(Map<String, Object> r, Path jsonFile, String command) throws IOException {
        Path dir = jsonFile.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        json().writeValue(jsonFile.toFile(), r);
        String stem = jsonFile.getFileName().toString().replaceFirst("\\.json$", "");
        Path md = dir.resolve(stem + ".md");
        Map<String, Double> before = (Map<String, Double>) r.get("before");
        Map<String, Double> after = (Map<String, Double>) r.get("after");
        StringBuilder sb = new StringBuilder();
        sb.append("# Noisy labels: calibrated curvature edit\n\n");
        sb.append("Command: `").append(command).append("`\n\n");
        sb.append("Config: `").append(r.get("config")).append("`\n\n");
        sb.append("Flipped training examples: ").append(r.get("flipped_count")).append("\n\n");
        sb.append("## Calibration (probe accuracy within tolerance; flipped set never used)\n\n");
        sb.append("| layer | calibrated ρ | kept pairs | probe acc | probe loss | G: eigenvalues for 50/90/99% | A: 50/90/99% |\n|---|---|---|---|---|---|---|\n");
        for (Map<String, Object> l : (List<Map<String, Object>>) r.get("layers")) {
            dev.curvewatch.curvature.SpectrumSummary g = (dev.curvewatch.curvature.SpectrumSummary) l.get("spectrum_G");
            dev.curvewatch.curvature.SpectrumSummary a = (dev.curvewatch.curvature.SpectrumSummary) l.get("spectrum_A");
            sb.append(String.format("| %s | %s | %s / %s | %s | %s | %d/%d/%d | %d/%d/%d |%n", l.get("layer"),
                    l.getOrDefault("calibrated_rho", "none"), l.getOrDefault("kept_pairs", "-"),
                    l.getOrDefault("total_pairs", "-"), fmt(l.get("probe_accuracy")), fmt(l.get("probe_loss")),
                    g.count50(), g.count90(), g.count99(), a.count50(), a.count90(), a.count99()));
        }
        sb.append("\nChosen layer: **").append(r.get("chosen_layer")).append("** at ρ = ")
                .append(r.get("chosen_rho")).append("\n\n");
        if (after != null) {
            sb.append("## Before / after\n\n| metric | before | after |\n|---|---|---|\n");
            for (String k : before.keySet()) {
                sb.append(String.format("| %s | %.4f | %.4f |%n", k, before.get(k), after.get(k)));
            }
            String[] cats = {"flipped_memorized", "flipped_true", "clean_train_accuracy", "test_accuracy"};
            double[][] vals = new double[2][cats.length];
            for (int i = 0; i < cats.length; i++) {
                vals[0][i] = before.get(cats[i]);
                vals[1][i] = after.get(cats[i]);
            }
            Plots.bars(dir.resolve(stem + "-before-after.png"), "Noisy labels: before vs after the edit", cats,
                    new String[] {"before", "after"}, vals);
            sb.append("\n![before/after](").append(stem).append("-before-after.png)\n\n");
            Map<String, Object> d = (Map<String, Object>) r.get("detection");
            sb.append("## Detection (flipped vs clean training examples)\n\n| score | AUROC |\n|---|---|\n");
            sb.append(String.format("| exact edit sensitivity | %.4f |%n", (Double) d.get("auroc_exact_edit_sensitivity")));
            sb.append(String.format("| first-order gᵀ(W'−W)a from captures | %.4f |%n", (Double) d.get("auroc_first_order")));
            sb.append(String.format("| per-example loss (baseline) | %.4f |%n", (Double) d.get("auroc_loss_baseline")));
            sb.append(String.format("%nMemorization gap (train minus probe mean edit sensitivity): %.4f nats%n%n",
                    (Double) d.get("memorization_gap")));
            List<Plots.Series> rocs = new ArrayList<>();
            rocs.add(roc("exact edit sensitivity", (double[][]) d.get("roc_exact")));
            rocs.add(roc("first-order", (double[][]) d.get("roc_first_order")));
            rocs.add(roc("loss baseline", (double[][]) d.get("roc_loss")));
            Plots.lines(dir.resolve(stem + "-roc.png"), "ROC: flipped vs clean", rocs, 0, 1, "false positive rate");
            sb.append("![roc](").append(stem).append("-roc.png)\n\n");
            double[] scores = (double[]) d.get("scores_exact");
            boolean[] flipped = (boolean[]) d.get("flipped");
            double[][] groups = split(scores, flipped);
            Plots.histogram(dir.resolve(stem + "-scores.png"), "Exact edit sensitivity (nats)",
                    new String[] {"clean", "flipped"}, groups, 40);
            sb.append("![scores](").append(stem).append("-scores.png)\n\n");
        }
        Map<String, Object> o = (Map<String, Object>) r.get("capture_overhead");
        if (o != null) {
            sb.append(String.format("## Capture overhead%n%nMedian training step (batch %s, forward+backward+Adam): "
                            + "%.3f ms without capture, %.3f ms capturing a and g of both hidden layers (+%.1f%%).%n",
                    o.get("batch"), (Double) o.get("median_step_ms_without_capture"),
                    (Double) o.get("median_step_ms_with_capture"), 100 * (Double) o.get("overhead_fraction")));
        }
        Files.writeString(md, sb.toString());
        return md;
    }

    private static Plots.Series roc(String name, double[][] pts) {
        double[] x = new double[pts.length];
        double[] y = new double[pts.length];
        for (int i = 0; i < pts.length; i++) {
            x[i] = pts[i][0];
            y[i] = pts[i][1];
        }
        return new Plots.Series(name, x, y);
    }

    private static double[][] split(double[] scores, boolean[] positive) {
        int pos = 0;
        for (boolean b : positive) {
            pos += b ? 1 : 0;
        }
        double[] p = new double[pos];
        double[] n = new double[scores.length - pos];
        int i = 0;
        int j = 0;
        for (int k = 0; k < scores.length; k++) {
            if (positive[k]) {
                p[i++] = scores[k];
            } else {
                n[j++] = scores[k];
            }
        }
        return new double[][] {n, p};
    }

    private static String fmt(Object v) {
        return v instanceof Double d ? String.format("%.4f", d) : String.valueOf(v);
    }
}
