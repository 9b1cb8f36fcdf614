package dev.curvewatch.curvature;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Basis drift, spectrum summary and the drift-gated refresh against numpy (1e-9 relative). */
class SignalsTest {
    private static final int N = 40;
    private final Eigenbasis previous = SymmetricEigensolvers.best()
            .decompose(Golden.doubles("eigh.f"), N, Precision.FLOAT64).orThrow();
    private final double[] moved = Golden.doubles("drift.f2");

    @Test
    void driftAndOverlapMatchNumpy() {
        Eigenbasis next = SymmetricEigensolvers.best().decompose(moved, N, Precision.FLOAT64).orThrow();
        BasisDrift d = BasisDrift.between(previous, next, moved, 5);
        assertEquals(Golden.doubles("drift.offdiag")[0], d.offDiagonal(), 1e-9 * d.offDiagonal());
        assertEquals(Golden.doubles("drift.overlap5")[0], d.topOverlap(), 1e-9);
        assertEquals(0, BasisDrift.offDiagonal(previous, Golden.doubles("eigh.f")).offDiagonal(), 1e-12);
        assertEquals(Golden.doubles("drift.overlap5")[0], BasisDrift.topOverlap(previous, next, 5), 1e-9, "the overlap alone");
        assertEquals(1, BasisDrift.topOverlap(previous, previous, N), 1e-12, "a basis against itself");
        assertThrows(IllegalArgumentException.class, () -> BasisDrift.topOverlap(previous, next, N + 1));
    }

    @Test
    void spectrumSummaryMatchesNumpy() {
        SpectrumSummary s = SpectrumSummary.of(previous.values());
        double[] ref = Golden.doubles("spectrum.summary");
        assertEquals((int) ref[0], s.count50());
        assertEquals((int) ref[1], s.count90());
        assertEquals((int) ref[2], s.count99());
        assertEquals(ref[3], s.effectiveRank(), 1e-9 * ref[3]);
    }

    @Test
    void spectrumSummaryClosedForms() {
        SpectrumSummary flat = SpectrumSummary.of(new double[] {1, 1, 1, 1});
        assertEquals(4, flat.effectiveRank(), 1e-12);
        assertEquals(2, flat.count50());
        assertEquals(0, flat.decaySlope(), 1e-12);
        SpectrumSummary power = SpectrumSummary.of(new double[] {1, 0.25, 1.0 / 9, 1.0 / 16});
        assertEquals(-2, power.decaySlope(), 1e-12);
        SpectrumSummary spike = SpectrumSummary.of(new double[] {99, 1, 0});
        assertEquals(1, spike.count90());
        assertEquals(1, spike.count99());
    }

    @Test
    void refreshSkipsBelowToleranceWithRayleighQuotients() {
        EigenbasisRefresh refresh = new EigenbasisRefresh(SymmetricEigensolvers.best(), 0.5, Precision.FLOAT64);
        EigenbasisRefresh.Outcome o = refresh.refresh(previous, moved, N);
        assertTrue(o.skipped());
        assertEquals(Golden.doubles("drift.offdiag")[0], o.drift(), 1e-9);
        Eigenbasis b = o.result().orThrow();
        double[] exact = SymmetricEigensolvers.best().decompose(moved, N, Precision.FLOAT64).orThrow().values();
        // Rayleigh quotients are within drift² of the eigenvalues, relative to the top one
        assertTrue(Math.abs(b.value(0) - exact[0]) < 1e-2 * exact[0]);
        for (int k = 1; k < N; k++) {
            assertTrue(b.value(k) <= b.value(k - 1));
        }
    }

    @Test
    void refreshDecomposesAboveToleranceAndOnFirstCall() {
        EigenbasisRefresh refresh = new EigenbasisRefresh(SymmetricEigensolvers.best(), 1e-6, Precision.FLOAT64);
        EigenbasisRefresh.Outcome o = refresh.refresh(previous, moved, N);
        assertFalse(o.skipped());
        double[] exact = SymmetricEigensolvers.best().decompose(moved, N, Precision.FLOAT64).orThrow().values();
        assertEquals(exact[0], o.result().orThrow().value(0), 0);
        EigenbasisRefresh.Outcome first = refresh.refresh(null, moved, N);
        assertFalse(first.skipped());
        assertTrue(Double.isNaN(first.drift()));
    }

    @Test
    void refreshOfANaNFactorIsAFailureValue() {
        double[] bad = moved.clone();
        bad[3] = Double.NaN;
        bad[3 * N] = Double.NaN;
        EigenbasisRefresh refresh = new EigenbasisRefresh(SymmetricEigensolvers.best(), 0.5, Precision.FLOAT64);
        EigenbasisRefresh.Outcome o = refresh.refresh(previous, bad, N);
        assertFalse(o.result().isSuccess());
        assertFalse(o.skipped());
    }
}
