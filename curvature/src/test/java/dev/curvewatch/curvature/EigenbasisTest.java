package dev.curvewatch.curvature;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class EigenbasisTest {
    private static final double[] IDENTITY = {1, 0, 0, 1};

    @Test
    void keepsDefensiveCopies() {
        double[] values = {2, 1};
        Eigenbasis b = new Eigenbasis(2, values, IDENTITY, -0.5, Precision.FLOAT64);
        values[0] = 99;
        b.values()[1] = 99;
        assertArrayEquals(new double[] {2, 1}, b.values());
        assertEquals(-0.5, b.rawMin());
    }

    @Test
    void rejectsUnsortedNegativeNonFiniteOrMisshapedInput() {
        assertThrows(IllegalArgumentException.class, () -> new Eigenbasis(2, new double[] {1, 2}, IDENTITY, 0, Precision.FLOAT64));
        assertThrows(IllegalArgumentException.class, () -> new Eigenbasis(2, new double[] {-1, -2}, IDENTITY, 0, Precision.FLOAT64));
        assertThrows(IllegalArgumentException.class,
                () -> new Eigenbasis(2, new double[] {Double.NaN, 0}, IDENTITY, 0, Precision.FLOAT64));
        assertThrows(IllegalArgumentException.class, () -> new Eigenbasis(2, new double[] {1, 0}, new double[3], 0, Precision.FLOAT64));
    }

    @Test
    void eigenResultCarriesEitherABasisOrAReason() {
        EigenResult failed = EigenResult.failure("LAPACK dsyevd info=3");
        assertEquals("LAPACK dsyevd info=3", failed.failureReason().orElseThrow());
        IllegalStateException e = assertThrows(IllegalStateException.class, failed::orThrow);
        assertEquals("eigendecomposition failed: LAPACK dsyevd info=3", e.getMessage());
    }
}
