package dev.curvewatch.trainer.experiments;

import dev.curvewatch.curvature.SpectrumSummary;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** Writes a noisy-labels result as JSON plus a markdown report with PNG plots beside it. */
public final class NoisyLabelsReport {

    private NoisyLabelsReport() {
    }

    /** @return the markdown file written */
    @SuppressWarnings("unchecked")
    public static Path write(Map<String, Object> r, Path jsonFile, String command) throws IOException {
        ReportFiles files = ReportFiles.writeJson(r, jsonFile);
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
            sb.append(String.format("| %s | %s | %s / %s | %s | %s | %s | %s |%n", l.get("layer"),
                    l.getOrDefault("calibrated_rho", "none"), l.getOrDefault("kept_pairs", "-"),
                    l.getOrDefault("total_pairs", "-"), fmt(l.get("probe_accuracy")), fmt(l.get("probe_loss")),
                    ReportFiles.concentration((SpectrumSummary) l.get("spectrum_G")),
                    ReportFiles.concentration((SpectrumSummary) l.get("spectrum_A"))));
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
            Plots.bars(files.png("before-after"), "Noisy labels: before vs after the edit", cats,
                    new String[] {"before", "after"}, vals);
            sb.append("\n").append(files.image("before/after", "before-after"));
            Map<String, Object> d = (Map<String, Object>) r.get("detection");
            sb.append("## Detection (flipped vs clean training examples)\n\n| score | AUROC |\n|---|---|\n");
            sb.append(String.format("| exact edit sensitivity | %.4f |%n", (Double) d.get("auroc_exact_edit_sensitivity")));
            sb.append(String.format("| first-order gᵀ(W'−W)a from captures | %.4f |%n", (Double) d.get("auroc_first_order")));
            sb.append(String.format("| per-example loss (baseline) | %.4f |%n", (Double) d.get("auroc_loss_baseline")));
            sb.append(String.format("%nMemorization gap (train minus probe mean edit sensitivity): %.4f nats%n%n",
                    (Double) d.get("memorization_gap")));
            files.detectionPlots(sb, d, "flipped vs clean", "Exact edit sensitivity (nats)", "flipped",
                    new String[] {"clean", "flipped"});
        }
        Map<String, Object> o = (Map<String, Object>) r.get("capture_overhead");
        if (o != null) {
            sb.append(String.format("## Capture overhead%n%nMedian training step (batch %s, forward+backward+Adam): "
                            + "%.3f ms without capture, %.3f ms capturing a and g of both hidden layers (+%.1f%%).%n",
                    o.get("batch"), (Double) o.get("median_step_ms_without_capture"),
                    (Double) o.get("median_step_ms_with_capture"), 100 * (Double) o.get("overhead_fraction")));
        }
        return files.writeMarkdown(sb);
    }

    private static String fmt(Object v) {
        return v instanceof Double d ? String.format("%.4f", d) : String.valueOf(v);
    }
}
