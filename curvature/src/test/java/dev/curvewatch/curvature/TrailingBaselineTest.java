package dev.curvewatch.curvature;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TrailingBaselineTest {
    /** The rule written out directly: two passes over the previous w values. */
    private static double reference(double[] v, int end, int w, double k, double floor) {
        double mean = 0;
        for (int i = end - w; i < end; i++) {
            mean += v[i];
        }
        mean /= w;
        double ss = 0;
        for (int i = end - w; i < end; i++) {
            ss += (v[i] - mean) * (v[i] - mean);
        }
        return mean + Math.max(k * Math.sqrt(ss / Math.max(1, w - 1)), floor);
    }

    @Test
    void rollingWindowMatchesTheRuleWrittenOut() {
        Random r = new Random(7);
        double[] v = new double[60];
        for (int i = 0; i < v.length; i++) {
            v[i] = 0.02 + 0.01 * r.nextGaussian() + (i > 40 ? 0.5 : 0);
        }
        for (int w : new int[]{1, 4, 6}) {
            TrailingBaseline b = new TrailingBaseline(w, 5, 0.05);
            for (int i = 0; i < v.length; i++) {
                if (i >= w) {
                    double want = reference(v, i, w, 5, 0.05);
                    assertEquals(want, b.threshold().getAsDouble(), 1e-15, "w=" + w + " i=" + i);
                    assertEquals(want, TrailingBaseline.threshold(v, i - w, i, 5, 0.05), 1e-15);
                    assertEquals(v[i] > want, b.exceeds(v[i]));
                } else {
                    assertTrue(b.threshold().isEmpty(), "no threshold before the window is full");
                    assertFalse(b.exceeds(1e9));
                }
                b.admit(v[i]);
            }
        }
    }

    @Test
    void rollingWindowGivesTheSameBitsAsTheSliceAfterWrapping() {
        Random r = new Random(8);
        double[] v = new double[200];
        for (int i = 0; i < v.length; i++) {
            v[i] = Math.exp(3 * r.nextGaussian()) * (r.nextBoolean() ? 1 : -1); // wide magnitudes: sums depend on order
        }
        for (int w : new int[]{1, 2, 3, 5, 7, 16}) {
            TrailingBaseline b = new TrailingBaseline(w, 5, 0.05);
            for (int i = 0; i < v.length; i++) {
                if (i >= w) {
                    double want = reference(v, i, w, 5, 0.05);
                    assertEquals(want, b.threshold().getAsDouble(), "w=" + w + " i=" + i);
                    assertEquals(want, TrailingBaseline.threshold(v, i - w, i, 5, 0.05));
                }
                b.admit(v[i]);
            }
        }
    }

    @Test
    void knownNumbers() {
        TrailingBaseline b = new TrailingBaseline(4, 5, 0.05);
        for (double x : new double[]{0.01, 0.02, 0.03, 0.04}) {
            b.admit(x);
        }
        // mean 0.025, sample sd sqrt(0.0005/3) = 0.0129099; 5 sd = 0.0645497 > floor
        assertEquals(0.025, b.mean(), 1e-15);
        assertEquals(Math.sqrt(0.0005 / 3), b.sd(), 1e-15);
        assertEquals(0.025 + 5 * Math.sqrt(0.0005 / 3), b.threshold().getAsDouble(), 1e-15);
        assertTrue(b.exceeds(0.09));
        assertFalse(b.exceeds(0.089));
        TrailingBaseline flat = new TrailingBaseline(3, 5, 0.05);
        for (int i = 0; i < 3; i++) {
            flat.admit(0.1);
        }
        assertEquals(0.15, flat.threshold().getAsDouble(), 1e-15, "a flat window alerts only past the floor");
        assertThrows(IllegalArgumentException.class, () -> flat.admit(Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> new TrailingBaseline(0, 5, 0.05));
        assertFalse(flat.exceeds(Double.NaN));
    }
}
