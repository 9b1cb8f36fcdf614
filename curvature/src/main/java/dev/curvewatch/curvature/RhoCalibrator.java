package dev.curvewatch.curvature;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalDouble;

/**
 * Per-layer ρ calibration (DESIGN §3): candidates 1−ρ on a log grid from {@code maxGap} (most
 * aggressive, default 0.4) down to {@code minGap} (mildest, default 1e-5); returns the most
 * aggressive candidate whose probe score stays within {@code tolerance} of the unedited score.
 * Scores are assumed to worsen monotonically as ρ drops, so the grid is bisected: about
 * log2(points) edits are scored instead of all of them.
 */
public final class RhoCalibrator {

    /** Whether a larger probe score is better (accuracy) or worse (loss). */
    public enum Direction { HIGHER_IS_BETTER, LOWER_IS_BETTER }

    /** Scores the layer edited at ρ on probe data (one real forward pass per call). */
    @FunctionalInterface
    public interface ProbeScorer {
        double score(double rho);
    }

    private final double[] gaps;
    private final double tolerance;
    private final Direction direction;

    /**
     * @param maxGap largest 1−ρ tried (most aggressive), &lt; 1
     * @param minGap smallest 1−ρ tried, &gt; 0
     * @param points grid size, ≥ 2, spaced evenly in log(1−ρ)
     * @param tolerance allowed worsening of the score versus unedited, ≥ 0
     */
    public RhoCalibrator(double maxGap, double minGap, int points, double tolerance, Direction direction) {
        if (!(maxGap < 1 && minGap > 0 && minGap < maxGap) || points < 2 || !(tolerance >= 0)) {
            throw new IllegalArgumentException("need 0 < minGap < maxGap < 1, points >= 2, tolerance >= 0; got "
                    + minGap + ", " + maxGap + ", " + points + ", " + tolerance);
        }
        this.gaps = new double[points];
        double logMax = Math.log(maxGap);
        double logMin = Math.log(minGap);
        for (int k = 0; k < points; k++) {
            gaps[k] = Math.exp(logMax + (logMin - logMax) * k / (points - 1));
        }
        this.tolerance = tolerance;
        this.direction = direction;
    }

    /** The DESIGN §3 grid: 1−ρ from 0.4 to 1e-5 with four points per decade (19 candidates). */
    public static RhoCalibrator standard(double tolerance, Direction direction) {
        return new RhoCalibrator(0.4, 1e-5, 19, tolerance, direction);
    }

    /** Candidate ρ values, most aggressive first. */
    public double[] candidates() {
        double[] rhos = new double[gaps.length];
        for (int k = 0; k < gaps.length; k++) {
            rhos[k] = 1 - gaps[k];
        }
        return rhos;
    }

    /**
     * @param baselineScore score of the unedited layer on the same probes
     * @param scorer scores an edit at a candidate ρ
     */
    public RhoCalibration calibrate(double baselineScore, ProbeScorer scorer) {
        double[] rhos = candidates();
        List<RhoCalibration.Evaluation> trace = new ArrayList<>();
        // Invariant: every index < lo failed or is unknown-but-more-aggressive; index hi passed (or hi = n).
        int lo = 0;
        int hi = rhos.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            double score = scorer.score(rhos[mid]);
            boolean ok = within(baselineScore, score);
            trace.add(new RhoCalibration.Evaluation(rhos[mid], score, ok));
            if (ok) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        OptionalDouble best = hi < rhos.length ? OptionalDouble.of(rhos[hi]) : OptionalDouble.empty();
        return new RhoCalibration(best, baselineScore, trace);
    }

    private boolean within(double baseline, double score) {
        if (Double.isNaN(score)) {
            return false;
        }
        double worsening = direction == Direction.HIGHER_IS_BETTER ? baseline - score : score - baseline;
        return worsening <= tolerance;
    }
}
