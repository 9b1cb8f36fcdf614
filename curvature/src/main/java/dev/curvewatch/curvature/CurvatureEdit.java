package dev.curvewatch.curvature;

import dev.curvewatch.curvature.internal.NativeMatrix;
import dev.curvewatch.curvature.spi.BlasBackend;
import java.nio.DoubleBuffer;

/**
 * The curvature edit of one linear layer (DESIGN §2): coordinates C = U_Gᵀ W U_A in the
 * Kronecker eigenbasis, and W' = U_G (C ⊙ M) U_Aᵀ for a keep-mass mask M. C depends on W, not on
 * the mask: a caller trying many ρ on one W (a candidate's answer, a calibration) computes
 * {@link #coordinates(double[]) coordinates} once and applies each mask to them, two gemms per mask
 * instead of four; {@link #apply(double[], KeepMassMask)} is the one-mask shorthand and gives the
 * same bits. Weights are row-major d_out x d_in; every product is a BLAS gemm in fp64.
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

    /**
     * C = U_Gᵀ W U_A of {@code w} (d_out x d_in row-major), to edit under many masks with
     * {@link #apply(Coordinates, KeepMassMask)}: two of the four gemms of an edit, paid once.
     */
    public Coordinates coordinates(double[] w) {
        checkWeights(w.length);
        int m = g.size();
        int n = a.size();
        try (NativeMatrix ug = NativeMatrix.copyOf(g.vectorsView());
             NativeMatrix ua = NativeMatrix.copyOf(a.vectorsView());
             NativeMatrix wm = NativeMatrix.copyOf(w);
             NativeMatrix t = NativeMatrix.zeros(m * n);
             NativeMatrix c = NativeMatrix.zeros(m * n)) {
            gemm(false, false, m, n, n, wm, ua, t);
            gemm(true, false, m, n, m, ug, t, c);
            return new Coordinates(this, c.toArray());
        }
    }

    /** Float32 weights: the coordinates of {@code w} widened to fp64. */
    public Coordinates coordinates(float[] w) {
        return coordinates(widen(w));
    }

    /**
     * W' = U_G (C ⊙ M) U_Aᵀ from coordinates this edit computed; {@code c} is left as it was, so
     * the same coordinates serve every mask a calibration tries.
     */
    public double[] apply(Coordinates c, KeepMassMask mask) {
        if (c.edit != this) {
            throw new IllegalArgumentException("coordinates were computed by another CurvatureEdit (other eigenbases)");
        }
        checkMask(mask);
        int m = g.size();
        int n = a.size();
        try (NativeMatrix ug = NativeMatrix.copyOf(g.vectorsView());
             NativeMatrix ua = NativeMatrix.copyOf(a.vectorsView());
             NativeMatrix masked = NativeMatrix.copyOf(c.values);
             NativeMatrix t = NativeMatrix.zeros(m * n);
             NativeMatrix out = NativeMatrix.zeros(m * n)) {
            DoubleBuffer cb = masked.buffer();
            for (int i = 0; i < m; i++) {
                for (int j = mask.rowCount(i); j < n; j++) {
                    cb.put(i * n + j, 0.0);
                }
            }
            gemm(false, true, m, n, n, masked, ua, t);
            gemm(false, false, m, n, m, ug, t, out);
            return out.toArray();
        }
    }

    /** {@link #apply(Coordinates, KeepMassMask)} rounded to float32 once, for float32 weights. */
    public float[] applyFloat32(Coordinates c, KeepMassMask mask) {
        double[] edited = apply(c, mask);
        float[] out = new float[edited.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) edited[i];
        }
        return out;
    }

    /**
     * W' = U_G (C ⊙ M) U_Aᵀ for one mask: {@code apply(coordinates(w), mask)}. An all-keeping
     * mask gives back W up to rounding. To try several masks on one W, compute the coordinates
     * once instead.
     */
    public double[] apply(double[] w, KeepMassMask mask) {
        checkWeights(w.length);
        checkMask(mask);
        return apply(coordinates(w), mask);
    }

    /** Float32 weights, one mask: computed in fp64, rounded back once; {@code applyFloat32(coordinates(w), mask)}. */
    public float[] apply(float[] w, KeepMassMask mask) {
        checkWeights(w.length);
        checkMask(mask);
        return applyFloat32(coordinates(w), mask);
    }

    private static double[] widen(float[] w) {
        double[] wide = new double[w.length];
        for (int i = 0; i < w.length; i++) {
            wide[i] = w[i];
        }
        return wide;
    }

    private void checkWeights(int length) {
        if (length != (long) g.size() * a.size()) {
            throw new IllegalArgumentException("weights need " + g.size() + "x" + a.size() + " = "
                    + ((long) g.size() * a.size()) + " values, got " + length);
        }
    }

    private void checkMask(KeepMassMask mask) {
        if (mask.rows() != g.size() || mask.columns() != a.size()) {
            throw new IllegalArgumentException("mask is " + mask.rows() + "x" + mask.columns()
                    + " but the layer is " + g.size() + "x" + a.size());
        }
    }

    /** Dense row-major product with leading dimensions equal to the stored row lengths. */
    private void gemm(boolean ta, boolean tb, int m, int n, int k, NativeMatrix x, NativeMatrix y, NativeMatrix out) {
        blas.gemm(ta, tb, m, n, k, 1.0, x.buffer(), ta ? m : k, y.buffer(), tb ? k : n, 0.0, out.buffer(), n);
    }

    /**
     * C = U_Gᵀ W U_A of one weight matrix in the eigenbases of the {@link CurvatureEdit} that
     * computed it, which alone can apply it. Immutable; holds d_out x d_in doubles, as much
     * memory as W in fp64.
     */
    public static final class Coordinates {
        private final CurvatureEdit edit;
        private final double[] values;

        private Coordinates(CurvatureEdit edit, double[] values) {
            this.edit = edit;
            this.values = values;
        }

        public int rows() {
            return edit.rows();
        }

        public int columns() {
            return edit.columns();
        }

        /** A copy of C, row-major d_out x d_in. */
        public double[] values() {
            return values.clone();
        }
    }
}
