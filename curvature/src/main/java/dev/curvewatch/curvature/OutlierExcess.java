package dev.curvewatch.curvature;

import java.util.Arrays;

/**
 * The run-level memorization alarm (issue 12): how many training examples score above the
 * probes' highest scores, against what chance allows.
 *
 * <p>A memorized example is one whose loss the edit raises far more than any held-out example's;
 * memorization in a sequence model is a few examples among hundreds, so a mean over the recent
 * examples (the memorization gap) dilutes it. Instead: take the j-th largest of the m probe
 * scores as the threshold and count the n training scores above it. Were training and probe
 * examples exchangeable (nothing memorized), the share of training scores above the j-th largest
 * of m probes would be Beta(j, m + 1 − j) distributed, so the count is beta-binomial
 * BetaBinomial(n, j, m + 1 − j) and its upper tail is an exact p-value whatever the score's scale
 * or distribution. j = 1 (the probes' maximum) is the most sensitive to a few extreme examples.
 *
 * <p>Power has a floor set by the probes: the probability that all m probes fall below the
 * 1 − s quantile is (1 − s)^m, so p &lt; α needs a share of about ln(1/α)/m of the training
 * examples above the threshold (256 probes, α = 1e-3: 2.7%, 14 of 512).
 */
public final class OutlierExcess {
    /**
     * @param count     training scores above the threshold
     * @param n         training scores
     * @param m         probe scores
     * @param j         the threshold is the j-th largest probe score
     * @param threshold that score
     * @param expected  count expected by chance, n·j/(m+1)
     * @param pValue    P(count or more | exchangeable)
     */
    public record Result(int count, int n, int m, int j, double threshold, double expected, double pValue) {
        /** −log10 of the p-value, capped at 300 (the alarm's signal value). */
        public double surprise() {
            return Math.min(300, -Math.log10(Math.max(pValue, 1e-300)));
        }
    }

    private OutlierExcess() {
    }

    /**
     * @param train  training example scores (higher = more memorized), at least one
     * @param probes probe example scores, at least {@code j}
     * @param j      rank of the probe score used as threshold, ≥ 1
     */
    public static Result of(double[] train, double[] probes, int j) {
        if (train.length == 0 || j < 1 || probes.length < j) {
            throw new IllegalArgumentException("need training scores and at least j >= 1 probe scores; got " + train.length + " training, "
                    + probes.length + " probe scores, j = " + j);
        }
        double[] sorted = probes.clone();
        Arrays.sort(sorted);
        double threshold = sorted[sorted.length - j];
        int count = 0;
        for (double s : train) {
            if (!Double.isFinite(s)) {
                throw new IllegalArgumentException("non-finite training score " + s);
            }
            if (s > threshold) {
                count++;
            }
        }
        int m = probes.length;
        int n = train.length;
        return new Result(count, n, m, j, threshold, (double) n * j / (m + 1), upperTail(count, n, j, m + 1 - j));
    }

    /** P(K ≥ k) for K ~ BetaBinomial(n, a, b), a, b &gt; 0, summed in log space from the pmf's ratio recurrence. */
    public static double upperTail(int k, int n, double a, double b) {
        if (k <= 0) {
            return 1;
        }
        if (k > n) {
            return 0;
        }
        // log pmf(0) = log B(a, n + b) − log B(a, b) = Σ_{t<n} log((b + t) / (a + b + t))
        double logPmf = 0;
        for (int t = 0; t < n; t++) {
            logPmf += Math.log((b + t) / (a + b + t));
        }
        double[] tail = new double[n - k + 1];
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            if (i >= k) {
                tail[i - k] = logPmf;
                max = Math.max(max, logPmf);
            }
            // pmf(i + 1) / pmf(i) = (n − i)/(i + 1) · (a + i)/(b + n − i − 1)
            logPmf += Math.log((double) (n - i) / (i + 1)) + Math.log((a + i) / (b + n - i - 1));
        }
        tail[n - k] = logPmf;
        max = Math.max(max, logPmf);
        double sum = 0;
        for (double t : tail) {
            sum += Math.exp(t - max);
        }
        return Math.min(1, Math.exp(max + Math.log(sum)));
    }
}
