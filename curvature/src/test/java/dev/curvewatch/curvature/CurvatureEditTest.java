package dev.curvewatch.curvature;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * Edits against the numpy reference (1e-9 relative, fp64), the orthogonality identity, and
 * coordinates computed once against the one-shot path (bit for bit, fp64 and fp32 weights).
 */
class CurvatureEditTest {
    private static final int D_OUT = 30;
    private static final int D_IN = 24;

    static CurvatureEdit goldenEdit() {
        Eigenbasis g = SymmetricEigensolvers.best().decompose(Golden.doubles("edit.G"), D_OUT, Precision.FLOAT64).orThrow();
        Eigenbasis a = SymmetricEigensolvers.best().decompose(Golden.doubles("edit.A"), D_IN, Precision.FLOAT64).orThrow();
        return new CurvatureEdit(g, a);
    }

    @Test
    void matchesNumpyEdit() {
        CurvatureEdit edit = goldenEdit();
        KeepMassMask mask = edit.select(Golden.doubles("edit.rho")[0]);
        assertEquals(Golden.longs("edit.kept")[0], mask.keptPairs());
        double[] edited = edit.apply(Golden.doubles("edit.w"), mask);
        double err = Golden.relativeError(edited, Golden.doubles("edit.w_edited"));
        assertTrue(err < 1e-9, "relative error " + err);
    }

    @Test
    void keepingEveryPairGivesBackTheWeights() {
        CurvatureEdit edit = goldenEdit();
        double[] w = Golden.doubles("edit.w");
        KeepMassMask all = edit.select(1.0);
        assertEquals((long) D_OUT * D_IN, all.keptPairs());
        assertTrue(Golden.relativeError(edit.apply(w, all), w) < 1e-12);
        float[] wf = new float[w.length];
        for (int i = 0; i < w.length; i++) {
            wf[i] = (float) w[i];
        }
        float[] back = edit.apply(wf, all);
        for (int i = 0; i < w.length; i++) {
            assertEquals(wf[i], back[i], 1e-6f);
        }
    }

    @Test
    void coordinatesRotateIntoTheEigenbasisAndKeepTheNorm() {
        CurvatureEdit edit = goldenEdit();
        double[] w = Golden.doubles("edit.w");
        double[] c = edit.coordinates(w).values();
        double nw = 0;
        double nc = 0;
        for (int i = 0; i < w.length; i++) {
            nw += w[i] * w[i];
            nc += c[i] * c[i];
        }
        assertEquals(nw, nc, 1e-10 * nw);
    }

    @Test
    void coordinatesComputedOnceEditLikeTheOneShotPathBitForBit() {
        CurvatureEdit edit = goldenEdit();
        double[] w = Golden.doubles("edit.w");
        float[] wf = new float[w.length];
        for (int i = 0; i < w.length; i++) {
            wf[i] = (float) w[i];
        }
        CurvatureEdit.Coordinates c = edit.coordinates(w);
        CurvatureEdit.Coordinates cf = edit.coordinates(wf);
        assertEquals(D_OUT, c.rows());
        assertEquals(D_IN, c.columns());
        double[] before = c.values();
        double[] beforeF = cf.values();
        // aggressive, none, golden, aggressive again: a mask applied earlier must not stick to the coordinates
        double[] rhos = {0.3, 1.0, Golden.doubles("edit.rho")[0], 0.9, 0.3};
        for (double rho : rhos) {
            KeepMassMask m = edit.select(rho);
            assertArrayEquals(edit.apply(w, m), edit.apply(c, m), "fp64 weights, rho " + rho);
            assertArrayEquals(edit.apply(wf, m), edit.applyFloat32(cf, m), "fp32 weights, rho " + rho);
        }
        assertArrayEquals(before, c.values(), "apply leaves the coordinates as they were");
        assertArrayEquals(beforeF, cf.values());
        double err = Golden.relativeError(edit.apply(c, edit.select(Golden.doubles("edit.rho")[0])),
                Golden.doubles("edit.w_edited"));
        assertTrue(err < 1e-9, "relative error " + err);
    }

    @Test
    void coordinatesAreAppliedOnlyByTheEditThatComputedThem() {
        CurvatureEdit edit = goldenEdit();
        CurvatureEdit.Coordinates c = edit.coordinates(Golden.doubles("edit.w"));
        CurvatureEdit other = goldenEdit();
        assertThrows(IllegalArgumentException.class, () -> other.apply(c, other.select(0.5)));
        assertThrows(IllegalArgumentException.class, () -> other.applyFloat32(c, other.select(0.5)));
    }

    @Test
    void rejectsWrongShapes() {
        CurvatureEdit edit = goldenEdit();
        assertThrows(IllegalArgumentException.class, () -> edit.coordinates(new double[5]));
        KeepMassMask other = KeepMassSelector.select(new double[] {1}, new double[] {1}, 0.5);
        assertThrows(IllegalArgumentException.class, () -> edit.apply(Golden.doubles("edit.w"), other));
        assertThrows(IllegalArgumentException.class, () -> edit.apply(edit.coordinates(Golden.doubles("edit.w")), other));
        assertThrows(IllegalArgumentException.class, () -> edit.coordinates(new float[5]));
    }
}
