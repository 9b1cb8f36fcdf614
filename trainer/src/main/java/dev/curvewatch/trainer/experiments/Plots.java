package dev.curvewatch.trainer.experiments;

import javax.imageio.ImageIO;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/** Minimal headless PNG charts (java.awt + ImageIO: works offline, no plotting dependency). */
public final class Plots {

    private static final int W = 720;
    private static final int H = 440;
    private static final int L = 70;
    private static final int R = 20;
    private static final int T = 40;
    private static final int B = 70;
    private static final Color[] PALETTE = {new Color(0x1f77b4), new Color(0xff7f0e), new Color(0x2ca02c),
        new Color(0xd62728), new Color(0x9467bd)};

    static {
        System.setProperty("java.awt.headless", "true");
    }

    private Plots() {
    }

    /** A named (x, y) series. */
    public record Series(String name, double[] x, double[] y) {
    }

    /** Grouped bars: values[series][category], y from 0 to 1. */
    public static void bars(Path file, String title, String[] categories, String[] series, double[][] values)
            throws IOException {
        BufferedImage img = canvas();
        Graphics2D g = frame(img, title, 0, 1, "");
        int pw = W - L - R;
        int ph = H - T - B;
        double group = (double) pw / categories.length;
        double bar = group * 0.8 / series.length;
        for (int c = 0; c < categories.length; c++) {
            for (int s = 0; s < series.length; s++) {
                double v = Math.max(0, Math.min(1, values[s][c]));
                int x = (int) (L + c * group + group * 0.1 + s * bar);
                int h = (int) (v * ph);
                g.setColor(PALETTE[s % PALETTE.length]);
                g.fillRect(x, T + ph - h, (int) bar - 2, h);
                g.setColor(Color.BLACK);
                g.drawString(String.format("%.3f", values[s][c]), x, T + ph - h - 3);
            }
            g.drawString(categories[c], (int) (L + c * group + 4), H - B + 18);
        }
        legend(g, series);
        write(img, file);
    }

    /** Lines with y in [yMin, yMax]; x spans the union of the series. */
    public static void lines(Path file, String title, List<Series> series, double yMin, double yMax, String xLabel)
            throws IOException {
        double xMin = Double.POSITIVE_INFINITY;
        double xMax = Double.NEGATIVE_INFINITY;
        for (Series s : series) {
            for (double x : s.x()) {
                xMin = Math.min(xMin, x);
                xMax = Math.max(xMax, x);
            }
        }
        if (!(xMax > xMin)) {
            xMax = xMin + 1;
        }
        BufferedImage img = canvas();
        Graphics2D g = frame(img, title, yMin, yMax, xLabel);
        int pw = W - L - R;
        int ph = H - T - B;
        g.setStroke(new BasicStroke(2f));
        String[] names = new String[series.size()];
        for (int s = 0; s < series.size(); s++) {
            Series ser = series.get(s);
            names[s] = ser.name();
            g.setColor(PALETTE[s % PALETTE.length]);
            for (int i = 1; i < ser.x().length; i++) {
                int x0 = (int) (L + (ser.x()[i - 1] - xMin) / (xMax - xMin) * pw);
                int x1 = (int) (L + (ser.x()[i] - xMin) / (xMax - xMin) * pw);
                int y0 = (int) (T + ph - (ser.y()[i - 1] - yMin) / (yMax - yMin) * ph);
                int y1 = (int) (T + ph - (ser.y()[i] - yMin) / (yMax - yMin) * ph);
                g.drawLine(x0, y0, x1, y1);
            }
        }
        g.setColor(Color.BLACK);
        g.drawString(String.format("%.3g", xMin), L, H - B + 18);
        g.drawString(String.format("%.3g", xMax), W - R - 40, H - B + 18);
        legend(g, names);
        write(img, file);
    }

    /** Two overlaid histograms (normalised per group) over a shared range. */
    public static void histogram(Path file, String title, String[] names, double[][] groups, int bins)
            throws IOException {
        double lo = Double.POSITIVE_INFINITY;
        double hi = Double.NEGATIVE_INFINITY;
        for (double[] grp : groups) {
            for (double v : grp) {
                lo = Math.min(lo, v);
                hi = Math.max(hi, v);
            }
        }
        if (!(hi > lo)) {
            hi = lo + 1;
        }
        double[][] freq = new double[groups.length][bins];
        double max = 0;
        for (int k = 0; k < groups.length; k++) {
            for (double v : groups[k]) {
                int b = (int) Math.min(bins - 1, (v - lo) / (hi - lo) * bins);
                freq[k][b] += 1.0 / groups[k].length;
            }
            for (double f : freq[k]) {
                max = Math.max(max, f);
            }
        }
        BufferedImage img = canvas();
        Graphics2D g = frame(img, title, 0, max, "score");
        int pw = W - L - R;
        int ph = H - T - B;
        double bw = (double) pw / bins;
        for (int k = 0; k < groups.length; k++) {
            Color c = PALETTE[k % PALETTE.length];
            g.setColor(new Color(c.getRed(), c.getGreen(), c.getBlue(), 140));
            for (int b = 0; b < bins; b++) {
                int h = (int) (freq[k][b] / max * ph);
                g.fillRect((int) (L + b * bw), T + ph - h, Math.max(1, (int) bw - 1), h);
            }
        }
        g.setColor(Color.BLACK);
        g.drawString(String.format("%.3g", lo), L, H - B + 18);
        g.drawString(String.format("%.3g", hi), W - R - 60, H - B + 18);
        legend(g, names);
        write(img, file);
    }

    private static BufferedImage canvas() {
        return new BufferedImage(W, H, BufferedImage.TYPE_INT_RGB);
    }

    private static Graphics2D frame(BufferedImage img, String title, double yMin, double yMax, String xLabel) {
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, W, H);
        g.setColor(Color.BLACK);
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        g.drawString(title, L, 22);
        g.drawLine(L, T, L, H - B);
        g.drawLine(L, H - B, W - R, H - B);
        for (int k = 0; k <= 4; k++) {
            double v = yMin + (yMax - yMin) * k / 4;
            int y = (int) (H - B - (double) (H - T - B) * k / 4);
            g.drawString(String.format("%.3g", v), 5, y + 4);
            g.setColor(new Color(0xdddddd));
            g.drawLine(L + 1, y, W - R, y);
            g.setColor(Color.BLACK);
        }
        g.drawString(xLabel, W / 2, H - B + 40);
        return g;
    }

    private static void legend(Graphics2D g, String[] names) {
        for (int s = 0; s < names.length; s++) {
            g.setColor(PALETTE[s % PALETTE.length]);
            g.fillRect(W - R - 220, T + 4 + s * 16, 10, 10);
            g.setColor(Color.BLACK);
            g.drawString(names[s], W - R - 205, T + 13 + s * 16);
        }
    }

    private static void write(BufferedImage img, Path file) throws IOException {
        if (file.getParent() != null) {
            java.nio.file.Files.createDirectories(file.getParent());
        }
        ImageIO.write(img, "png", file.toFile());
    }
}
