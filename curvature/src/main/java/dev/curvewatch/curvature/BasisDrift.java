package dev.curvewatch.curvature;

import dev.curvewatch.curvature.spi.BlasBackend;
import java.nio.DoubleBuffer;

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
        if (previous.size() != next.size() || k < 1 || k > previous.size()) {
            throw new IllegalArgumentException("bases of size " + previous.size() + " and " + next.size()
                    + " with k=" + k);
        }
        BlasBackend blas = BlasBackends.best();
        double off = offDiagonalRatio(rotate(previous, f, blas), f, previous.size());
        int n = previous.size();
        // overlap = ‖U[:, :k]ᵀ V[:, :k]‖_F² / k, from the full UᵀV product's top-left block
        double[] cross = new double[n * n];
        blas.gemm(true, false, n, n, n, 1.0, DoubleBuffer.wrap(previous.vectorsView()), n,
                DoubleBuffer.wrap(next.vectorsView()), n, 0.0, DoubleBuffer.wrap(cross), n);
        double s = 0;
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < k; j++) {
                s += cross[i * n + j] * cross[i * n + j];
            }
        }
        return new BasisDrift(off, s / k, k);
    }

    /** QᵀFQ for the basis Q, n x n row-major. */
    static double[] rotate(Eigenbasis q, double[] f, BlasBackend blas) {
        int n = q.size();
        if (f.length != (long) n * n) {
            throw new IllegalArgumentException("factor needs " + ((long) n * n) + " values for a basis of size "
                    + n + ", got " + f.length);
        }
        double[] fq = new double[n * n];
        blas.gemm(false, false, n, n, n, 1.0, DoubleBuffer.wrap(f), n, DoubleBuffer.wrap(q.vectorsView()), n,
                0.0, DoubleBuffer.wrap(fq), n);
        double[] m = new double[n * n];
        blas.gemm(true, false, n, n, n, 1.0, DoubleBuffer.wrap(q.vectorsView()), n, DoubleBuffer.wrap(fq), n,
                0.0, DoubleBuffer.wrap(m), n);
        return m;
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
