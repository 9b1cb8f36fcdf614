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
}
