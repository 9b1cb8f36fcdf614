package dev.curvewatch.trainer.experiments;

import dev.curvewatch.curvature.SpectrumSummary;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** JSON + markdown + PNG for the canaries experiment. */
public final class CanariesReport {

    private CanariesReport() {
    }

    @SuppressWarnings("unchecked")
    public static Path write(Map<String, Object> r, Path jsonFile, String command) throws IOException {
        ReportFiles files = ReportFiles.writeJson(r, jsonFile);
        StringBuilder sb = new StringBuilder("# Canary recitation: calibrated curvature edit\n\n");
        sb.append("Command: `").append(command).append("`\n\nConfig: `").append(r.get("config")).append("`\n\n");
        sb.append("## Calibration (held-out mean loss may rise by ln(1.05); canaries never used)\n\n");
        sb.append("| layer | calibrated ρ | kept pairs | train − probe edit sensitivity (nats) | G: 50/90/99% | A: 50/90/99% |\n|---|---|---|---|---|---|\n");
        for (Map<String, Object> l : (List<Map<String, Object>>) r.get("layers")) {
            sb.append(String.format("| %s | %s | %s | %s | %s | %s |%n", l.get("layer"),
                    l.getOrDefault("calibrated_rho", "none"), l.getOrDefault("kept_pairs", "-"),
                    l.getOrDefault("train_minus_probe_sensitivity", "-"),
                    ReportFiles.concentration((SpectrumSummary) l.get("spectrum_G")),
                    ReportFiles.concentration((SpectrumSummary) l.get("spectrum_A"))));
        }
        sb.append("\nChosen layer: **").append(r.get("chosen_layer")).append("** at ρ = ").append(r.get("chosen_rho")).append("\n\n");
        Map<String, Object> before = (Map<String, Object>) r.get("before");
        Map<String, Object> after = (Map<String, Object>) r.get("after");
        if (after != null) {
            sb.append("| metric | before | after |\n|---|---|---|\n");
            for (String k : List.of("strict_recitation", "loose_recitation", "held_out_perplexity")) {
                sb.append(String.format("| %s | %.4f | %.4f |%n", k, (Double) before.get(k), (Double) after.get(k)));
            }
            sb.append("\nGreedy decodes after the edit: `").append(after.get("decoded")).append("`\n\n");
            Plots.bars(files.png("recitation"), "Canary recitation before vs after the edit",
                    new String[] {"strict", "loose (lev >= 0.75)"}, new String[] {"before", "after"},
                    new double[][] {{(Double) before.get("strict_recitation"), (Double) before.get("loose_recitation")},
                        {(Double) after.get("strict_recitation"), (Double) after.get("loose_recitation")}});
            sb.append(files.image("recitation", "recitation"));
            Map<String, Object> d = (Map<String, Object>) r.get("detection");
            Map<String, Object> pp = (Map<String, Object>) d.get("per_position");
            sb.append(String.format("## Detection%n%nPer example: each canary's secret (%s) vs %s random secret-length "
                            + "spans of ordinary training text, score summed over the span. Per position: canary "
                            + "secret characters vs a 10%% sample of other training positions.%n%n", d.get("canary_examples"),
                    ((Number) d.get("examples")).intValue() - ((Number) d.get("canary_examples")).intValue()));
            sb.append("| score | AUROC per example | AUROC per position |\n|---|---|---|\n");
            String[][] rows = {{"exact edit sensitivity", "auroc_exact_edit_sensitivity"},
                {"first-order gᵀ(W'−W)a", "auroc_first_order"}, {"loss (low = memorized)", "auroc_loss_baseline"}};
            for (String[] row : rows) {
                sb.append(String.format("| %s | %.4f | %.4f |%n", row[0], (Double) d.get(row[1]), (Double) pp.get(row[1])));
            }
            sb.append("\nPer example:\n\n");
            files.detectionPlots(sb, d, "canary secrets vs clean spans", "Exact edit sensitivity per span (nats)", "canary",
                    new String[] {"clean span", "canary"});
        }
        return files.writeMarkdown(sb);
    }
}
