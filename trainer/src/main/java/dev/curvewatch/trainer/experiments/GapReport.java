package dev.curvewatch.trainer.experiments;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** JSON + markdown + PNG for the memorization-gap experiment. */
public final class GapReport {

    private GapReport() {
    }

    @SuppressWarnings("unchecked")
    public static Path write(Map<String, Object> r, Path jsonFile, String command) throws IOException {
        ReportFiles files = ReportFiles.writeJson(r, jsonFile);
        String what = (String) r.getOrDefault("injected_what", "noise");
        String fittedKey = (String) r.getOrDefault("fitted_key", "flipped_fitted");
        StringBuilder sb = new StringBuilder("# Memorization gap over training: clean control vs injected " + what + "\n\n");
        sb.append("Command: `").append(command).append("`\n\nConfig: `").append(r.get("config")).append("`\n\n");
        List<Plots.Series> lines = new ArrayList<>();
        double lo = 0;
        double hi = 0;
        for (String run : List.of("clean", "injected")) {
            Map<String, Object> m = (Map<String, Object>) r.get(run);
            List<Map<String, Object>> s = (List<Map<String, Object>>) m.get("series");
            sb.append("## ").append(run).append(" run (" + what + " injected at epoch ").append(m.get("inject_at_epoch"))
                    .append("): first alert at epoch ").append(m.get("first_alert_epoch"))
                    .append(String.format(" (threshold then %.4f nats)", (Double) m.get("threshold"))).append("\n\n");
            sb.append("| epoch | calibrated ρ | train sens. | probe sens. | gap | threshold | " + fittedKey.replace('_', ' ')
                    + " |\n|---|---|---|---|---|---|---|\n");
            double[] x = new double[s.size()];
            double[] y = new double[s.size()];
            for (int k = 0; k < s.size(); k++) {
                Map<String, Object> p = s.get(k);
                x[k] = ((Number) p.get("epoch")).doubleValue();
                y[k] = (Double) p.get("gap");
                lo = Math.min(lo, y[k]);
                hi = Math.max(hi, y[k]);
                Object t = p.get("threshold");
                sb.append(String.format("| %s | %.6f | %.4f | %.4f | %.4f | %s | %.3f |%n", p.get("epoch"), (Double) p.get("rho"),
                        (Double) p.get("train_sensitivity"), (Double) p.get("probe_sensitivity"), y[k],
                        t == null ? "(window)" : String.format("%.4f", (Double) t), (Double) p.get(fittedKey)));
            }
            lines.add(new Plots.Series(run + " gap", x, y));
            sb.append("\n");
        }
        Plots.lines(files.png(""), "Memorization gap (nats) per refresh", lines, lo, Math.max(hi, lo + 1e-3), "epoch");
        sb.append(files.image("gap", ""));
        return files.writeMarkdown(sb);
    }
}
