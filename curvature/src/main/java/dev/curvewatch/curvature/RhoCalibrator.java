package dev.curvewatch.curvature;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalDouble;

/**
 * Per-layer ρ calibration (DESIGN §3): candidates 1−ρ on a log grid from {@code maxGap} (most
 * aggressive, default 0.4) down to {@code minGap} (mildest, default 1e-5); returns the most
 * aggressive candidate whose probe score stays within {@code tolerance} of the unedited score.
 *
 * <p>Two ways in. {@link #calibrate} scores edits on demand and assumes scores worsen
 * monotonically as ρ drops, so it bisects the grid: about log2(points) edits are scored instead
 * of all of them. {@link #calibrateMeasured} takes a score already measured for every candidate
 * (the service's exact round trip: the trainer scores all of them) and uses all of them: the most
 * aggressive ρ such that it <em>and every milder candidate</em> qualify. On a monotone curve both
 * give the same ρ; on a noisy one the measured rule never jumps over a failing milder candidate.
 *
 * <p>"Within tolerance" is {@code worsening <= tolerance + EPSILON * max(1, |baseline|)}: a
 * worsening of exactly the tolerance qualifies even when the subtraction rounds up (0.95 − 0.94 =
 * 0.010000000000000009 is a drop of one point, not more).
 */
public final class RhoCalibrator {

    /** Whether a larger probe score is better (accuracy) or worse (loss). */
    public enum Direction { HIGHER_IS_BETTER, LOWER_IS_BETTER }

    /** Scores the layer edited at ρ on probe data (one real forward pass per call). */
    @FunctionalInterface
    public interface ProbeScorer {
        double score(double rho);
    }

    /** Relative slack of the tolerance comparison, far below any real score difference and far above rounding. */
    public static final double EPSILON = 1e-9;

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

    /**
     * The most aggressive ρ such that it and every milder candidate stay within tolerance, from
     * scores measured for every candidate; empty when the mildest one fails (no edit). The trace
     * holds every candidate, most aggressive first.
     *
     * @param scores the score under each candidate, in {@link #candidates()} order
     */
    public RhoCalibration calibrateMeasured(double baselineScore, double[] scores) {
        if (scores.length != gaps.length) {
            throw new IllegalArgumentException(scores.length + " scores for " + gaps.length + " candidates");
        }
        int[] all = new int[gaps.length];
        for (int k = 0; k < all.length; k++) {
            all[k] = k;
        }
        return calibrateEvaluated(baselineScore, all, scores);
    }

    /**
     * The same rule over the candidates that were evaluated (a bisection's path, say): the most
     * aggressive evaluated ρ such that it and every milder <em>evaluated</em> candidate stay within
     * tolerance; empty when the mildest evaluated one fails. The trace holds the evaluated
     * candidates, most aggressive first.
     *
     * @param evaluated indices into {@link #candidates()}, strictly ascending
     * @param scores    the score under each evaluated candidate, aligned with {@code evaluated}
     */
    public RhoCalibration calibrateEvaluated(double baselineScore, int[] evaluated, double[] scores) {
        double[] rhos = candidates();
        if (scores.length != evaluated.length || evaluated.length == 0) {
            throw new IllegalArgumentException(scores.length + " scores for " + evaluated.length + " evaluated candidates");
        }
        for (int j = 0; j < evaluated.length; j++) {
            if (evaluated[j] < 0 || evaluated[j] >= rhos.length || (j > 0 && evaluated[j] <= evaluated[j - 1])) {
                throw new IllegalArgumentException("evaluated candidates must be ascending indices below " + rhos.length);
            }
        }
        List<RhoCalibration.Evaluation> trace = new ArrayList<>(evaluated.length);
        int best = -1; // position of the most aggressive candidate of the qualifying tail
        boolean tail = true;
        boolean[] ok = new boolean[evaluated.length];
        for (int j = evaluated.length - 1; j >= 0; j--) {
            ok[j] = within(baselineScore, scores[j]);
            tail &= ok[j];
            if (tail) {
                best = j;
            }
        }
        for (int j = 0; j < evaluated.length; j++) {
            trace.add(new RhoCalibration.Evaluation(rhos[evaluated[j]], scores[j], ok[j]));
        }
        return new RhoCalibration(best >= 0 ? OptionalDouble.of(rhos[evaluated[best]]) : OptionalDouble.empty(), baselineScore, trace);
    }

    /** Whether a score is within tolerance of the baseline (NaN never is), with the {@link #EPSILON} slack. */
    public boolean within(double baseline, double score) {
        if (Double.isNaN(score)) {
            return false;
        }
        double worsening = direction == Direction.HIGHER_IS_BETTER ? baseline - score : score - baseline;
        return worsening <= tolerance + EPSILON * Math.max(1, Math.abs(baseline));
    }
}
