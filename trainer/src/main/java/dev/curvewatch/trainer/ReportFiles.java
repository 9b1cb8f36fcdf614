package dev.curvewatch.trainer;

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
     * Plots the ROC curves of {@code rocs} (name → points from {@link Metrics#roc}) and a histogram
     * of {@code scores} split by {@code positive}, and links both into {@code md}.
     */
    void detectionPlots(StringBuilder md, String what, Map<String, double[][]> rocs, String scoreName, double[] scores,
            boolean[] positive, String[] groupNames) throws IOException {
        List<Plots.Series> series = rocs.entrySet().stream().map(e -> rocSeries(e.getKey(), e.getValue())).toList();
        Plots.lines(png("roc"), "ROC: " + what, series, 0, 1, "false positive rate");
        md.append(image("roc", "roc"));
        Plots.histogram(png("scores"), scoreName, groupNames, splitByLabel(scores, positive), 40);
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
}
