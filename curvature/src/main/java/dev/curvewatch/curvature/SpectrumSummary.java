package dev.curvewatch.curvature;

/**
 * Dashboard summary of a factor spectrum (DESIGN §3 signal 4).
 *
 * @param count50 fewest leading eigenvalues holding ≥ 50% of the mass
 * @param count90 same for 90%
 * @param count99 same for 99% (1 means one direction dominates: a fixed ρ is then fragile)
 * @param effectiveRank exp(entropy of λ/Σλ)
 * @param decaySlope least-squares slope of log λ_k against log k over the positive eigenvalues
 *                   (about −α for a power law λ_k ∝ k^−α); NaN with fewer than two
 * @param total Σλ
 */
public record SpectrumSummary(int count50, int count90, int count99, double effectiveRank, double decaySlope,
                              double total) {

    /** Summary of descending, non-negative eigenvalues. */
    public static SpectrumSummary of(double[] values) {
        double total = 0;
        for (double v : values) {
            total += v;
        }
        if (!(total > 0)) {
            return new SpectrumSummary(0, 0, 0, 0, Double.NaN, total);
        }
        int c50 = countFor(values, total, 0.5);
        int c90 = countFor(values, total, 0.9);
        int c99 = countFor(values, total, 0.99);
        double entropy = 0;
        double sx = 0;
        double sy = 0;
        double sxx = 0;
        double sxy = 0;
        int positive = 0;
        for (int k = 0; k < values.length; k++) {
            if (values[k] > 0) {
                double p = values[k] / total;
                entropy -= p * Math.log(p);
                double x = Math.log(k + 1);
                double y = Math.log(values[k]);
                sx += x;
                sy += y;
                sxx += x * x;
                sxy += x * y;
                positive++;
            }
        }
        double slope = positive < 2 ? Double.NaN : (positive * sxy - sx * sy) / (positive * sxx - sx * sx);
        return new SpectrumSummary(c50, c90, c99, Math.exp(entropy), slope, total);
    }

    private static int countFor(double[] values, double total, double share) {
        double cum = 0;
        for (int k = 0; k < values.length; k++) {
            cum += values[k];
            if (cum >= share * total) {
                return k + 1;
            }
        }
        return values.length;
    }
}
