package dev.curvewatch.curvature;

import dev.curvewatch.curvature.internal.NativeMatrix;
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
        try (NativeMatrix ug = NativeMatrix.copyOf(g.vectorsView());
             NativeMatrix ua = NativeMatrix.copyOf(a.vectorsView());
             NativeMatrix c = coordinates(w, ug, ua)) {
            return c.toArray();
        }
    }

    private NativeMatrix coordinates(double[] w, NativeMatrix ug, NativeMatrix ua) {
        int m = g.size();
        int n = a.size();
        try (NativeMatrix wm = NativeMatrix.copyOf(w); NativeMatrix t = NativeMatrix.zeros(m * n)) {
            gemm(false, false, m, n, n, wm, ua, t);
            NativeMatrix c = NativeMatrix.zeros(m * n);
            gemm(true, false, m, n, m, ug, t, c);
            return c;
        }
    }

    /** W' = U_G (C ⊙ M) U_Aᵀ. An all-keeping mask gives back W up to rounding. */
    public double[] apply(double[] w, KeepMassMask mask) {
        checkWeights(w.length);
        if (mask.rows() != g.size() || mask.columns() != a.size()) {
            throw new IllegalArgumentException("mask is " + mask.rows() + "x" + mask.columns()
                    + " but the layer is " + g.size() + "x" + a.size());
        }
        int m = g.size();
        int n = a.size();
        try (NativeMatrix ug = NativeMatrix.copyOf(g.vectorsView());
             NativeMatrix ua = NativeMatrix.copyOf(a.vectorsView());
             NativeMatrix c = coordinates(w, ug, ua);
             NativeMatrix t = NativeMatrix.zeros(m * n);
             NativeMatrix out = NativeMatrix.zeros(m * n)) {
            DoubleBuffer cb = c.buffer();
            for (int i = 0; i < m; i++) {
                for (int j = mask.rowCount(i); j < n; j++) {
                    cb.put(i * n + j, 0.0);
                }
            }
            gemm(false, true, m, n, n, c, ua, t);
            gemm(false, false, m, n, m, ug, t, out);
            return out.toArray();
        }
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
    private void gemm(boolean ta, boolean tb, int m, int n, int k, NativeMatrix x, NativeMatrix y, NativeMatrix out) {
        blas.gemm(ta, tb, m, n, k, 1.0, x.buffer(), ta ? m : k, y.buffer(), tb ? k : n, 0.0, out.buffer(), n);
    }
}
