package dev.curvewatch.curvature;

import dev.curvewatch.curvature.spi.BlasBackend;
import java.nio.DoubleBuffer;

/**
 * The curvature edit of one linear layer (DESIGN §2): coordinates C = U_Gᵀ W U_A in the
 * Kronecker eigenbasis, and W' = U_G (C ⊙ M) U_Aᵀ for a keep-mass mask M. Weights are row-major
 * d_out x d_in; every product is a BLAS gemm in fp64.
 */
public final class CurvatureEdit {
    private final Eigenbasis g;
    private final Eigenbasis a;
    private final BlasBackend blas;

    /**
     * @param g eigenbasis of G (d_out x d_out)
     * @param a eigenbasis of A (d_in x d_in)
     */
    public CurvatureEdit(Eigenbasis g, Eigenbasis a) {
        this(g, a, BlasBackends.best());
    }

    public CurvatureEdit(Eigenbasis g, Eigenbasis a, BlasBackend blas) {
        this.g = g;
        this.a = a;
        this.blas = blas;
    }

    public int rows() {
        return g.size();
    }

    public int columns() {
        return a.size();
    }

    /** The keep-mass mask of this layer's spectra at ρ. */
    public KeepMassMask select(double rho) {
        return KeepMassSelector.select(g.values(), a.values(), rho);
    }

    /** C = U_Gᵀ W U_A, row-major d_out x d_in. */
    public double[] coordinates(double[] w) {
        checkWeights(w.length);
        int m = g.size();
        int n = a.size();
        double[] t = new double[m * n];
        gemm(false, false, m, n, n, w, a.vectorsView(), t);
        double[] c = new double[m * n];
        gemm(true, false, m, n, m, g.vectorsView(), t, c);
        return c;
    }

    /** W' = U_G (C ⊙ M) U_Aᵀ. An all-keeping mask gives back W up to rounding. */
    public double[] apply(double[] w, KeepMassMask mask) {
        if (mask.rows() != g.size() || mask.columns() != a.size()) {
            throw new IllegalArgumentException("mask is " + mask.rows() + "x" + mask.columns()
                    + " but the layer is " + g.size() + "x" + a.size());
        }
        int m = g.size();
        int n = a.size();
        double[] c = coordinates(w);
        for (int i = 0; i < m; i++) {
            java.util.Arrays.fill(c, i * n + mask.rowCount(i), (i + 1) * n, 0.0);
        }
        double[] t = new double[m * n];
        gemm(false, true, m, n, n, c, a.vectorsView(), t);
        double[] out = new double[m * n];
        gemm(false, false, m, n, m, g.vectorsView(), t, out);
        return out;
    }

    /** Float32 weights: computed in fp64, rounded back once. */
    public float[] apply(float[] w, KeepMassMask mask) {
        double[] wide = new double[w.length];
        for (int i = 0; i < w.length; i++) {
            wide[i] = w[i];
        }
        double[] edited = apply(wide, mask);
        float[] out = new float[edited.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) edited[i];
        }
        return out;
    }

    private void checkWeights(int length) {
        if (length != (long) g.size() * a.size()) {
            throw new IllegalArgumentException("weights need " + g.size() + "x" + a.size() + " = "
                    + ((long) g.size() * a.size()) + " values, got " + length);
        }
    }

    /** Dense row-major product with leading dimensions equal to the stored row lengths. */
    private void gemm(boolean ta, boolean tb, int m, int n, int k, double[] x, double[] y, double[] out) {
        int lda = ta ? m : k;
        int ldb = tb ? k : n;
        blas.gemm(ta, tb, m, n, k, 1.0, DoubleBuffer.wrap(x), lda, DoubleBuffer.wrap(y), ldb, 0.0,
                DoubleBuffer.wrap(out), n);
    }
}
