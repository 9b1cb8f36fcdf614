package dev.curvewatch.curvature.spi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.curvewatch.curvature.EigenResult;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.Golden;
import dev.curvewatch.curvature.Precision;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * What every {@link SymmetricEigensolver} must do; a backend module subclasses this (from
 * curvature's test-jar). Golden reference: scipy {@code eigh(driver="evd")} in
 * {@code golden/make_golden.py}. Tolerances (relative to the largest eigenvalue): FLOAT64
 * values 1e-12 and top-5 projector 1e-9; FLOAT32 values 1e-5 and projector 1e-3 (the projector
 * error of an fp32 solve grows like eps / spectral gap).
 */
public abstract class SymmetricEigensolverContract {

    protected abstract SymmetricEigensolver solver();

    @Test
    void closedFormTwoByTwo() {
        // [[2,1],[1,2]] has eigenvalues 3 and 1 with vectors (1,1)/√2 and (1,-1)/√2
        Eigenbasis b = solver().decompose(new double[] {2, 1, 1, 2}, 2, Precision.FLOAT64).orThrow();
        assertArrayEquals(new double[] {3, 1}, b.values(), 1e-14);
        double[] v = b.vectors();
        assertEquals(0.5, v[0] * v[0], 1e-14);
        assertEquals(v[0] * v[2], 0.5, 1e-14, "first column is ±(1,1)/√2");
        assertEquals(v[1] * v[3], -0.5, 1e-14, "second column is ±(1,-1)/√2");
    }

    @Test
    void sortsDescendingAndClampsNegativeRoundingAtZero() {
        Eigenbasis b = solver().decompose(new double[] {1, 0, 0, 0, -1e-15, 0, 0, 0, 5}, 3, Precision.FLOAT64).orThrow();
        assertArrayEquals(new double[] {5, 1, 0}, b.values(), 0);
        assertEquals(-1e-15, b.rawMin(), 1e-30);
        assertEquals(1.0, Math.abs(b.vectors()[2 * 3]), 1e-15, "eigenvalue 5 belongs to e3");
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void matchesScipyEigenvaluesAndTopSubspace(Precision precision) {
        double[] f = Golden.doubles("eigh.f");
        int n = 40;
        Eigenbasis b = solver().decompose(f, n, precision).orThrow();
        assertEquals(precision, b.precision());
        boolean fp64 = precision == Precision.FLOAT64;
        assertTrue(Golden.relativeError(b.values(), Golden.doubles("eigh.values")) < (fp64 ? 1e-12 : 1e-5));
        double[] u = b.vectors();
        double[] projector = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                for (int k = 0; k < 5; k++) {
                    projector[i * n + j] += u[i * n + k] * u[j * n + k];
                }
            }
        }
        assertTrue(Golden.relativeError(projector, Golden.doubles("eigh.projector5")) < (fp64 ? 1e-9 : 1e-3));
    }

    @Test
    void reconstructsTheInputFromTheBasis() {
        double[] f = Golden.doubles("eigh.f");
        int n = 40;
        Eigenbasis b = solver().decompose(f, n, Precision.FLOAT64).orThrow();
        double[] u = b.vectors();
        double[] back = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                for (int k = 0; k < n; k++) {
                    back[i * n + j] += u[i * n + k] * b.value(k) * u[j * n + k];
                }
            }
        }
        assertTrue(Golden.relativeError(back, f) < 1e-12);
    }

    @Test
    void nanAndInfinityAreFailuresNotExceptions() {
        EigenResult nan = solver().decompose(new double[] {1, Double.NaN, Double.NaN, 1}, 2, Precision.FLOAT64);
        assertFalse(nan.isSuccess());
        assertTrue(nan.failureReason().orElseThrow().contains("NaN"), nan.toString());
        EigenResult inf = solver().decompose(new double[] {Double.POSITIVE_INFINITY, 0, 0, 1}, 2, Precision.FLOAT32);
        assertFalse(inf.isSuccess());
        EigenResult shape = solver().decompose(new double[] {1, 2, 3}, 2, Precision.FLOAT64);
        assertFalse(shape.isSuccess());
    }
}
