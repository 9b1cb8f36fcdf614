package dev.curvewatch.curvature;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class OutlierExcessTest {
    /** Reference values: scipy 1.10 {@code stats.betabinom.sf(k - 1, n, a, b)}; relative 1e-7 (scipy's own sums differ in the 9th digit). */
    @Test
    void upperTailMatchesScipy() {
        assertRelative(0.0014061407568953799, OutlierExcess.upperTail(16, 512, 1, 256));
        assertRelative(0.0009274545420556723, OutlierExcess.upperTail(17, 512, 1, 256));
        assertRelative(0.6666666666669779, OutlierExcess.upperTail(1, 512, 1, 256));
        assertEquals(1.0, OutlierExcess.upperTail(0, 512, 1, 256), 0);
        assertRelative(0.00020968943706511922, OutlierExcess.upperTail(30, 500, 3, 254));
        assertRelative(0.3263862574207399, OutlierExcess.upperTail(5, 20, 2, 9));
        assertRelative(0.04761904761904723, OutlierExcess.upperTail(20, 20, 1, 1));
        assertEquals(0.0, OutlierExcess.upperTail(21, 20, 1, 1), 0);
    }

    @Test
    void countsTrainingScoresAboveTheJthLargestProbe() {
        OutlierExcess.Result r = OutlierExcess.of(new double[]{0.1, 5, 6, 0.2, 3.5}, new double[]{1, 3, 2, 0}, 1);
        assertEquals(3, r.count());
        assertEquals(3.0, r.threshold());
        assertEquals(5.0 / 5, r.expected(), 1e-15);
        assertEquals(OutlierExcess.upperTail(3, 5, 1, 4), r.pValue(), 0);
        OutlierExcess.Result second = OutlierExcess.of(new double[]{0.1, 5, 6, 0.2, 3.5}, new double[]{1, 3, 2, 0}, 2);
        assertEquals(2.0, second.threshold());
        assertEquals(3, second.count());  // a score equal to the threshold does not count
        assertThrows(IllegalArgumentException.class, () -> OutlierExcess.of(new double[]{1}, new double[]{1}, 2));
        assertThrows(IllegalArgumentException.class, () -> OutlierExcess.of(new double[]{Double.NaN}, new double[]{1}, 1));
    }

    /** Exchangeable scores: the p-value is valid (P(p ≤ α) ≤ α up to Monte Carlo error); 40 shifted scores are found. */
    @Test
    void pValueIsValidUnderExchangeabilityAndPowerfulUnderAShift() {
        Random rnd = new Random(7);
        int trials = 4000;
        int below01 = 0;
        int below05 = 0;
        for (int t = 0; t < trials; t++) {
            double[] probes = gaussians(rnd, 64, 0);
            double[] train = gaussians(rnd, 200, 0);
            double p = OutlierExcess.of(train, probes, 1).pValue();
            below01 += p <= 0.01 ? 1 : 0;
            below05 += p <= 0.05 ? 1 : 0;
        }
        // binomial sd at 4000 trials: 0.0016 at 0.01, 0.0034 at 0.05; the discrete test is conservative
        assertTrue(below01 / (double) trials <= 0.01 + 0.005, "P(p <= 0.01) = " + below01 / (double) trials);
        assertTrue(below05 / (double) trials <= 0.05 + 0.01, "P(p <= 0.05) = " + below05 / (double) trials);
        assertTrue(below05 / (double) trials >= 0.02, "not vacuous: P(p <= 0.05) = " + below05 / (double) trials);
        double[] probes = gaussians(rnd, 256, 0);
        double[] train = new double[500];
        System.arraycopy(gaussians(rnd, 460, 0), 0, train, 0, 460);
        System.arraycopy(gaussians(rnd, 40, 8), 0, train, 460, 40);
        OutlierExcess.Result r = OutlierExcess.of(train, probes, 1);
        assertTrue(r.count() >= 40 && r.pValue() < 1e-6 && r.surprise() > 6, r.toString());
    }

    private static void assertRelative(double expected, double actual) {
        assertEquals(expected, actual, 1e-7 * expected);
    }

    private static double[] gaussians(Random rnd, int n, double mean) {
        double[] x = new double[n];
        for (int i = 0; i < n; i++) {
            x[i] = mean + rnd.nextGaussian();
        }
        return x;
    }
}
