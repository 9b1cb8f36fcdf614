package dev.curvewatch.service.internal;

import dev.curvewatch.curvature.RhoCalibration;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The shared tolerance of a joint edit: worked cases, and a brute-force scan of the common share as the reference. */
class JointEditTest {
    static final double[] RHOS = {0.6, 0.75, 0.85, 0.9, 0.95, 0.98, 0.99};

    static JointEdit.Curve curve(double... shares) {
        return new JointEdit.Curve(java.util.Arrays.copyOf(RHOS, shares.length), shares);
    }

    @Test
    void twoLayersShareTheToleranceAtTheLargestCommonShare() {
        Map<String, JointEdit.Curve> curves = new LinkedHashMap<>();
        curves.put("a", curve(2.0, 1.0, 0.75, 0.5, 0.25, 0.1, 0.0));
        curves.put("b", curve(1.5, 1.0, 0.5, 0.3, 0.2, 0.0, 0.0));
        JointEdit.Choice c = JointEdit.choose(curves);
        // alone each would take its share-1 rho (0.75); together: at s = 0.5 the costs are 0.5 + 0.5
        assertEquals(Map.of("a", 0.9, "b", 0.85), c.rhos());
        assertEquals(0.5, c.share(), 1e-12);
        assertEquals(1.0, c.cost(), 1e-12);
        assertEquals(List.of("a", "b"), new ArrayList<>(c.rhos().keySet()), "the request's order");
    }

    @Test
    void aLayerNoShareCanEditIsLeftAsItIsAndCostsNothing() {
        Map<String, JointEdit.Curve> curves = new LinkedHashMap<>();
        curves.put("a", curve(3.0, 2.0, 1.5, 1.2));
        curves.put("b", curve(1.5, 1.0, 0.5, 0.3));
        JointEdit.Choice c = JointEdit.choose(curves);
        assertEquals(Map.of("a", 1.0, "b", 0.75), c.rhos());
        assertEquals(1.0, c.cost(), 1e-12);
        curves.put("b", curve(1.5, 1.2, 1.1, 1.05));
        assertEquals(Map.of("a", 1.0, "b", 1.0), JointEdit.choose(curves).rhos(), "nothing fits: no edit");
    }

    @Test
    void aNonMonotoneCurveFollowsTheCalibrationRuleAndAnImprovingEditCreatesNoBudget() {
        Map<String, JointEdit.Curve> curves = new LinkedHashMap<>();
        // b's 0.75 costs 0.2, but its milder 0.9 costs 0.6: b may be edited only from a share of 0.6 on
        curves.put("a", curve(0.9, 0.85, 0.5, -0.1));
        curves.put("b", curve(2.0, 0.2, 0.1, 0.6));
        JointEdit.Choice c = JointEdit.choose(curves);
        // s = 0.9: 0.9 + 0.2; s = 0.85: 0.85 + 0.2; s = 0.6: a at 0.85 (0.5) + b at 0.75 (0.2)
        assertEquals(Map.of("a", 0.85, "b", 0.75), c.rhos());
        assertEquals(0.6, c.share(), 1e-12);
        assertEquals(0.7, c.cost(), 1e-12);
        curves.put("a", curve(-0.2));
        curves.put("b", curve(1.0));
        c = JointEdit.choose(curves);
        assertEquals(Map.of("a", 0.6, "b", 0.6), c.rhos(), "a's improvement is free, and lends b nothing");
        assertEquals(1.0, c.cost(), 1e-12);
    }

    @Test
    void theChoiceIsTheLargestFeasibleCommonShareOfABruteForceScan() {
        Random r = new Random(12);
        for (int trial = 0; trial < 300; trial++) {
            Map<String, JointEdit.Curve> curves = new LinkedHashMap<>();
            int layers = 1 + r.nextInt(4);
            for (int l = 0; l < layers; l++) {
                double[] shares = new double[RHOS.length];
                for (int j = 0; j < shares.length; j++) {
                    shares[j] = (r.nextInt(160) - 10) / 100.0; // multiples of 0.01 in [-0.1, 1.5)
                }
                curves.put("l" + l, new JointEdit.Curve(RHOS, shares));
            }
            Map<String, Double> expected = null; // s = 0 always fits: the scan ends with one
            for (int step = 1000; step >= 0; step--) { // s from 1 down to 0 by 0.001: finer than any plateau
                double s = step / 1000.0;
                Map<String, Double> rhos = new LinkedHashMap<>();
                double total = 0;
                for (Map.Entry<String, JointEdit.Curve> e : curves.entrySet()) {
                    double[] sh = e.getValue().shares();
                    int best = -1;
                    for (int j = sh.length - 1; j >= 0 && sh[j] <= s + 1e-12; j--) {
                        best = j;
                    }
                    rhos.put(e.getKey(), best < 0 ? 1.0 : RHOS[best]);
                    total += best < 0 ? 0 : Math.max(0, sh[best]);
                }
                if (total <= 1 + 1e-12) {
                    expected = rhos;
                    break;
                }
            }
            JointEdit.Choice c = JointEdit.choose(curves);
            assertEquals(expected, c.rhos(), "trial " + trial + ": " + curves);
            assertTrue(c.cost() <= 1 + 1e-9, "within the tolerance: " + c.cost());
        }
    }

    @Test
    void aCurveIsTheWorseningOfTheProbeScoreAsAShareOfTheTolerance() {
        List<RhoCalibration.Evaluation> trace = List.of(new RhoCalibration.Evaluation(0.6, 0.80, false),
                new RhoCalibration.Evaluation(0.9, 0.94, true), new RhoCalibration.Evaluation(0.99, Double.NaN, false));
        JointEdit.Curve acc = JointEdit.Curve.of(trace, 0.95, 0.02, true);
        assertEquals(0.15 / 0.02, acc.shares()[0], 1e-9);
        assertEquals(0.5, acc.shares()[1], 1e-9);
        assertEquals(Double.POSITIVE_INFINITY, acc.shares()[2], "NaN never qualifies");
        JointEdit.Curve loss = JointEdit.Curve.of(List.of(new RhoCalibration.Evaluation(0.9, 2.1, true)), 2.0, 0.05, false);
        assertEquals(2.0, loss.shares()[0], 1e-9);
        assertEquals(0.0, JointEdit.Curve.of(List.of(new RhoCalibration.Evaluation(0.9, 2.0, true)), 2.0, 0, false).shares()[0],
                "zero tolerance: an edit that costs nothing is free");
    }
}
