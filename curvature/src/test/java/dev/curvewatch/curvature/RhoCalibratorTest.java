package dev.curvewatch.curvature;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class RhoCalibratorTest {

    @Test
    void standardGridSpansPointFourToOneEMinusFiveOnALogScale() {
        double[] rhos = RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER).candidates();
        assertEquals(19, rhos.length);
        assertEquals(0.6, rhos[0], 1e-12);
        assertEquals(1 - 1e-5, rhos[18], 1e-12);
        assertEquals(Math.log(1 - rhos[0]) - Math.log(1 - rhos[1]), Math.log(1 - rhos[1]) - Math.log(1 - rhos[2]), 1e-9);
    }

    @Test
    void findsTheMostAggressiveRhoWithinToleranceByBisection() {
        // accuracy 0.9 unedited; an edit keeps it from the 12th candidate on, then drops sharply
        RhoCalibrator c = RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER);
        double window = c.candidates()[11];
        RhoCalibration r = c.calibrate(0.9, rho -> rho >= window ? 0.895 : 0.25);
        assertEquals(window, r.rho().orElseThrow(), 0);
        assertTrue(r.trace().size() <= 5, "bisection over 19 candidates, got " + r.trace().size());
        assertEquals(0.9, r.baselineScore());
    }

    @Test
    void lossDirectionAndNothingPassing() {
        RhoCalibrator c = new RhoCalibrator(0.4, 1e-5, 8, 0.05, RhoCalibrator.Direction.LOWER_IS_BETTER);
        RhoCalibration none = c.calibrate(1.0, rho -> 3.0);
        assertFalse(none.rho().isPresent());
        assertTrue(none.trace().stream().noneMatch(RhoCalibration.Evaluation::withinTolerance));
        RhoCalibration all = c.calibrate(1.0, rho -> 1.01);
        assertTrue(all.trace().stream().allMatch(RhoCalibration.Evaluation::withinTolerance));
        assertEquals(0.6, all.rho().orElseThrow(), 1e-12);
        RhoCalibration nan = c.calibrate(1.0, rho -> Double.NaN);
        assertFalse(nan.rho().isPresent());
    }

    @Test
    void rejectsBadGrid() {
        assertThrows(IllegalArgumentException.class,
                () -> new RhoCalibrator(1e-5, 0.4, 5, 0, RhoCalibrator.Direction.LOWER_IS_BETTER));
        assertThrows(IllegalArgumentException.class,
                () -> new RhoCalibrator(0.4, 1e-5, 1, 0, RhoCalibrator.Direction.LOWER_IS_BETTER));
    }

    @Test
    void aDropOfExactlyTheToleranceQualifies() {
        // 0.95 - 0.94 = 0.010000000000000009 in doubles: one point of 100 probes, the tolerance exactly
        RhoCalibrator c = RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER);
        assertTrue(0.95 - 0.94 > 0.01, "the rounding this test is about");
        assertTrue(c.within(0.95, 0.94));
        assertFalse(c.within(0.95, 0.9399));
        assertEquals(0.6, c.calibrate(0.95, rho -> 0.94).rho().orElseThrow(), 1e-12);
        RhoCalibrator loss = RhoCalibrator.standard(0.05, RhoCalibrator.Direction.LOWER_IS_BETTER);
        assertTrue(loss.within(1.0, 1.05));
        assertFalse(loss.within(1.0, 1.0501));
    }

    @Test
    void measuredScoresTakeTheMostAggressiveRhoWithEveryMilderOneQualifying() {
        RhoCalibrator c = RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER);
        double[] rhos = c.candidates();
        // monotone: the same as bisection
        double[] monotone = new double[rhos.length];
        for (int k = 0; k < rhos.length; k++) {
            monotone[k] = k >= 7 ? 0.9 : 0.5;
        }
        RhoCalibration m = c.calibrateMeasured(0.9, monotone);
        assertEquals(rhos[7], m.rho().orElseThrow(), 0);
        assertEquals(c.calibrate(0.9, rho -> monotone[java.util.Arrays.binarySearch(rhos, rho)]).rho(), m.rho());
        assertEquals(rhos.length, m.trace().size(), "every measured candidate is in the trace");
        // a noisy dip at index 12 inside the passing range: not an island of 3..11 to take
        double[] dip = new double[rhos.length];
        for (int k = 0; k < rhos.length; k++) {
            dip[k] = k < 3 ? 0.4 : k == 12 ? 0.85 : 0.9;
        }
        RhoCalibration d = c.calibrateMeasured(0.9, dip);
        assertEquals(rhos[13], d.rho().orElseThrow(), 0, "the most aggressive rho with all milder ones passing");
        assertFalse(d.trace().get(12).withinTolerance());
        assertTrue(d.trace().get(5).withinTolerance(), "index 5 passes on its own but a milder one fails");
        // bisection probes index 9, passes, and goes more aggressive: it lands on 3, over the failing 12
        assertEquals(rhos[3], c.calibrate(0.9, rho -> dip[java.util.Arrays.binarySearch(rhos, rho)]).rho().orElseThrow(), 0);
        // the mildest fails: no edit, whatever passes before it
        double[] mildestFails = dip.clone();
        mildestFails[rhos.length - 1] = 0.1;
        assertFalse(c.calibrateMeasured(0.9, mildestFails).rho().isPresent());
        double[] nan = monotone.clone();
        nan[rhos.length - 2] = Double.NaN;
        assertEquals(rhos[rhos.length - 1], c.calibrateMeasured(0.9, nan).rho().orElseThrow(), 0, "NaN never qualifies");
        assertThrows(IllegalArgumentException.class, () -> c.calibrateMeasured(0.9, new double[3]));
    }

    @Test
    void evaluatedScoresUseTheSameRuleOnTheEvaluatedCandidatesOnly() {
        RhoCalibrator c = RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER);
        double[] rhos = c.candidates();
        // a bisection's path (4, 7, 8, 9) on a curve passing from 9 on: 9
        RhoCalibration path = c.calibrateEvaluated(0.9, new int[]{4, 7, 8, 9}, new double[]{0.5, 0.5, 0.5, 0.9});
        assertEquals(rhos[9], path.rho().orElseThrow(), 0);
        assertEquals(4, path.trace().size());
        assertEquals(rhos[4], path.trace().get(0).rho(), 0);
        // a milder evaluated point failing: the tail starts after it
        RhoCalibration dip = c.calibrateEvaluated(0.9, new int[]{8, 9, 16, 17}, new double[]{0.5, 0.9, 0.5, 0.9});
        assertEquals(rhos[17], dip.rho().orElseThrow(), 0);
        assertFalse(c.calibrateEvaluated(0.9, new int[]{3, 18}, new double[]{0.9, 0.5}).rho().isPresent(), "the mildest evaluated fails");
        // every candidate: calibrateMeasured is the same thing
        double[] all = new double[rhos.length];
        int[] idx = new int[rhos.length];
        for (int k = 0; k < rhos.length; k++) {
            all[k] = k == 12 ? 0.8 : k >= 3 ? 0.9 : 0.4;
            idx[k] = k;
        }
        assertEquals(c.calibrateMeasured(0.9, all).rho(), c.calibrateEvaluated(0.9, idx, all).rho());
        assertThrows(IllegalArgumentException.class, () -> c.calibrateEvaluated(0.9, new int[]{9, 4}, new double[]{0.9, 0.9}));
        assertThrows(IllegalArgumentException.class, () -> c.calibrateEvaluated(0.9, new int[]{19}, new double[]{0.9}));
    }
}
