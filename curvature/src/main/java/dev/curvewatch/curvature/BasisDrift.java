package dev.curvewatch.curvature;

import dev.curvewatch.curvature.internal.NativeMatrix;
import dev.curvewatch.curvature.spi.BlasBackend;

/**
 * How far a factor has moved away from an earlier eigenbasis (DESIGN §3 signal 3).
 *
 * @param offDiagonal ‖QᵀFQ − diag(QᵀFQ)‖_F / ‖F‖_F for the previous basis Q and new factor F:
 *                    0 when Q still diagonalises F
 * @param topOverlap ‖U_kᵀ V_k‖_F² / k for the top-k eigenvectors of the old and new bases: 1 when
 *                   the top subspaces coincide, NaN when no new basis was computed
 * @param k size of the compared top subspace
 */
public record BasisDrift(double offDiagonal, double topOverlap, int k) {

    /** Off-diagonal drift of factor {@code f} (n x n row-major) against {@code previous}. */
    public static BasisDrift offDiagonal(Eigenbasis previous, double[] f) {
        return new BasisDrift(offDiagonalRatio(rotate(previous, f, BlasBackends.best()), f, previous.size()),
                Double.NaN, 0);
    }

    /** Both measures between the previous and the new basis of {@code f}. */
    public static BasisDrift between(Eigenbasis previous, Eigenbasis next, double[] f, int k) {
        checkTop(previous, next, k);
        BlasBackend blas = BlasBackends.best();
        double off = offDiagonalRatio(rotate(previous, f, blas), f, previous.size());
        return new BasisDrift(off, topOverlap(previous, next, k, blas), k);
    }

    /**
     * ‖U_kᵀ V_k‖_F² / k for the top-k eigenvectors U_k of {@code previous} and V_k of {@code next}
     * (bases of the same size, 1 &le; k &le; size): 1 when the top subspaces coincide, 0 when they
     * are orthogonal. The subspace distance ‖U_k U_kᵀ − V_k V_kᵀ‖_F is √(2k (1 − overlap)).
     */
    public static double topOverlap(Eigenbasis previous, Eigenbasis next, int k) {
        checkTop(previous, next, k);
        return topOverlap(previous, next, k, BlasBackends.best());
    }

    private static void checkTop(Eigenbasis previous, Eigenbasis next, int k) {
        if (previous.size() != next.size() || k < 1 || k > previous.size()) {
            throw new IllegalArgumentException("bases of size " + previous.size() + " and " + next.size()
                    + " with k=" + k);
        }
    }

    private static double topOverlap(Eigenbasis previous, Eigenbasis next, int k, BlasBackend blas) {
        int n = previous.size();
        // overlap = ‖U[:, :k]ᵀ V[:, :k]‖_F² / k, from the full UᵀV product's top-left block
        double[] cross;
        try (NativeMatrix u = NativeMatrix.copyOf(previous.vectorsView());
             NativeMatrix v = NativeMatrix.copyOf(next.vectorsView()); NativeMatrix uv = NativeMatrix.zeros(n * n)) {
            blas.gemm(true, false, n, n, n, 1.0, u.buffer(), n, v.buffer(), n, 0.0, uv.buffer(), n);
            cross = uv.toArray();
        }
        double s = 0;
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < k; j++) {
                s += cross[i * n + j] * cross[i * n + j];
            }
        }
        return s / k;
    }

    /** QᵀFQ for the basis Q, n x n row-major. */
    static double[] rotate(Eigenbasis q, double[] f, BlasBackend blas) {
        int n = q.size();
        if (f.length != (long) n * n) {
            throw new IllegalArgumentException("factor needs " + ((long) n * n) + " values for a basis of size "
                    + n + ", got " + f.length);
        }
        try (NativeMatrix fm = NativeMatrix.copyOf(f); NativeMatrix qm = NativeMatrix.copyOf(q.vectorsView());
             NativeMatrix fq = NativeMatrix.zeros(n * n); NativeMatrix m = NativeMatrix.zeros(n * n)) {
            blas.gemm(false, false, n, n, n, 1.0, fm.buffer(), n, qm.buffer(), n, 0.0, fq.buffer(), n);
            blas.gemm(true, false, n, n, n, 1.0, qm.buffer(), n, fq.buffer(), n, 0.0, m.buffer(), n);
            return m.toArray();
        }
    }

    static double offDiagonalRatio(double[] rotated, double[] f, int n) {
        double off = 0;
        double all = 0;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                double r = rotated[i * n + j];
                if (i != j) {
                    off += r * r;
                }
                all += f[i * n + j] * f[i * n + j];
            }
        }
        return all == 0 ? 0 : Math.sqrt(off / all);
    }
}
