package dev.curvewatch.trainer.experiments;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.curvewatch.curvature.SpectrumSummary;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * One experiment's report files: the JSON result, and the markdown and PNG plots named after it
 * ({@code out.json} → {@code out.md}, {@code out-roc.png}, ...). Also the pieces every report
 * draws the same way: spectrum concentration cells and the detection ROC and score histogram.
 */
public final class ReportFiles {
    private final Path dir;
    private final String stem;

    private ReportFiles(Path dir, String stem) {
        this.dir = dir;
        this.stem = stem;
    }

    /** Pretty-printing JSON, the one used for every result file. */
    public static ObjectMapper json() {
        return new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    }

    /** Writes {@code result} to {@code jsonFile} (creating its folder) and names the report files after it. */
    static ReportFiles writeJson(Map<String, Object> result, Path jsonFile) throws IOException {
        Path dir = jsonFile.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        json().writeValue(jsonFile.toFile(), result);
        return new ReportFiles(dir, jsonFile.getFileName().toString().replaceFirst("\\.json$", ""));
    }

    /** {@code <stem>-<suffix>.png}, or {@code <stem>.png} for an empty suffix. */
    Path png(String suffix) {
        return dir.resolve(fileName(suffix));
    }

    /** A markdown image line for {@link #png(String)}. */
    String image(String alt, String suffix) {
        return "![" + alt + "](" + fileName(suffix) + ")\n\n";
    }

    /** @return the markdown file written, {@code <stem>.md} */
    Path writeMarkdown(CharSequence markdown) throws IOException {
        Path md = dir.resolve(stem + ".md");
        Files.writeString(md, markdown);
        return md;
    }

    /** "50/90/99" cells: how many eigenvalues hold 50, 90 and 99% of the spectrum's mass. */
    static String concentration(SpectrumSummary s) {
        return s.count50() + "/" + s.count90() + "/" + s.count99();
    }

    /**
     * Plots the ROC curves of a detection result (its {@code roc_exact}, {@code roc_first_order} and
     * {@code roc_loss} points from {@link Metrics#roc}) and a histogram of its {@code scores_exact}
     * split by the boolean array under {@code positiveKey}, and links both into {@code md}.
     */
    void detectionPlots(StringBuilder md, Map<String, Object> detection, String what, String scoreName, String positiveKey,
            String[] groupNames) throws IOException {
        List<Plots.Series> rocs = List.of(rocSeries("exact edit sensitivity", (double[][]) detection.get("roc_exact")),
                rocSeries("first-order", (double[][]) detection.get("roc_first_order")),
                rocSeries("loss baseline", (double[][]) detection.get("roc_loss")));
        Plots.lines(png("roc"), "ROC: " + what, rocs, 0, 1, "false positive rate");
        md.append(image("roc", "roc"));
        double[][] groups = splitByLabel((double[]) detection.get("scores_exact"), (boolean[]) detection.get(positiveKey));
        Plots.histogram(png("scores"), scoreName, groupNames, groups, 40);
        md.append(image("scores", "scores"));
    }

    private String fileName(String suffix) {
        return stem + (suffix.isEmpty() ? "" : "-" + suffix) + ".png";
    }

    private static Plots.Series rocSeries(String name, double[][] pts) {
        double[] x = new double[pts.length];
        double[] y = new double[pts.length];
        for (int i = 0; i < pts.length; i++) {
            x[i] = pts[i][0];
            y[i] = pts[i][1];
        }
        return new Plots.Series(name, x, y);
    }

    /** {negatives, positives}. */
    private static double[][] splitByLabel(double[] scores, boolean[] positive) {
        int pos = Metrics.countTrue(positive);
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
}
