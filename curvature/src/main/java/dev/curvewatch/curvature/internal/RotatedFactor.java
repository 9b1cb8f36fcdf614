package dev.curvewatch.curvature.internal;

import static org.bytedeco.openblas.global.openblas.CblasLeft;
import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasNonUnit;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.CblasTrans;
import static org.bytedeco.openblas.global.openblas.CblasUpper;
import static org.bytedeco.openblas.global.openblas.LAPACK_COL_MAJOR;

import java.nio.DoubleBuffer;
import java.util.Optional;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.openblas.global.openblas;

/**
 * A new factor F seen in a previous eigenbasis Q, in fp64: the Rayleigh quotients d = diag(QᵀFQ),
 * the basis drift ‖QᵀFQ − diag‖_F / ‖F‖_F, and from M = QᵀFQ a first-order update of the basis.
 *
 * <p>Cost. F + σI = UᵀU (Cholesky, n³/3 flops; σ a rounding-level shift, as a K-FAC factor may be
 * singular) and W = U Q (a triangular product, n³ flops) give d_k = ‖w_k‖² − σ and, Q being
 * orthogonal, the drift from ‖QᵀFQ‖_F = ‖F‖_F: ‖off‖² = ‖F‖_F² − Σ d_k² (fp64 resolves drifts
 * down to ~1e-7). That is a third of the flops of forming QᵀFQ with two gemms. Only a warm step
 * forms M = WᵀW − σI (syrk, n³) and rotates the basis (one Jacobi-type perturbation step, made
 * exactly orthogonal by a Cayley transform):
 *
 * <pre>
 *   K_jk = M_jk / (d_k − d_j)   (j ≠ k, only where |M_jk| &lt; {@value #GUARD}·|d_k − d_j|; else 0), K skew
 *   Q'   = Q (I − K/2)⁻¹ (I + K/2) = 2 Q (I − K/2)⁻¹ − Q     (one LU solve with n right-hand sides)
 *   λ_k  = d_k + Σ_j M_jk² / (d_k − d_j)                      (second-order eigenvalues, same pairs)
 * </pre>
 *
 * Its error is quadratic in the drift for well separated eigenvalues, where a QR power step
 * (Shampoo's, SOAP's) shrinks it only by the ratio of neighbouring eigenvalues, ~1 in a K-FAC
 * factor's long tail (curvature README, "Warm refresh"). Pairs closer than the guard keep their
 * previous vectors, as a skipped refresh does. All of it is fp64: an fp32 M or Q carries errors
 * of ~1e-7 of the top eigenvalue into tail directions whose eigenvalues are 1e-5 of it. Every
 * O(n³) step is a BLAS/LAPACK call on native memory; the Java loops are O(n²).
 */
public final class RotatedFactor implements AutoCloseable {
    /** Largest |M_jk| / |d_k − d_j| a pair may have and still be rotated (K entries stay below it). */
    public static final double GUARD = 0.1;
    /** Shifts tried for the Cholesky of F + σI, relative to the mean diagonal of F. */
    private static final double[] SHIFTS = {1e-12, 1e-9, 1e-6};

    private final int n;
    private final double[] previous;
    private final DoublePointer upper;
    private final DoublePointer rotated;
    private final double sigma;
    private final double[] rayleigh;
    private final double drift;

    /**
     * @param previousVectors Q, n x n row-major, orthonormal eigenvectors as columns
     * @param f               the new factor, n x n row-major symmetric positive semi-definite
     * @throws IllegalArgumentException if F + σI has no Cholesky factor even at the largest shift
     *         (F is not positive semi-definite)
     */
    public RotatedFactor(double[] previousVectors, double[] f, int n) {
        this.n = n;
        long nn = (long) n * n;
        if (previousVectors.length != nn || f.length != nn) {
            throw new IllegalArgumentException("a basis and a factor of side " + n + " need " + nn + " values each, got "
                    + previousVectors.length + " and " + f.length);
        }
        this.previous = previousVectors;
        double trace = 0;
        double all = 0;
        for (int i = 0; i < n; i++) {
            trace += f[i * n + i];
        }
        for (double v : f) {
            all += v * v;
        }
        upper = new DoublePointer(nn);
        rotated = new DoublePointer(previousVectors);
        double shift = Double.NaN;
        for (double relative : SHIFTS) {
            double s = relative * Math.max(trace / n, Double.MIN_NORMAL);
            upper.asBuffer().put(0, f);
            DoubleBuffer u = upper.asBuffer();
            for (int i = 0; i < n; i++) {
                u.put(i * n + i, u.get(i * n + i) + s);
            }
            // column-major lower = row-major upper: F + σI = UᵀU with U in the row-major upper triangle, no transposing copy
            int info = LargeStack.call("dpotrf", () -> openblas.LAPACKE_dpotrf(LAPACK_COL_MAJOR, (byte) 'L', n, upper, n));
            if (info == 0) {
                shift = s;
                break;
            }
        }
        if (Double.isNaN(shift)) {
            close();
            throw new IllegalArgumentException("the factor is not positive semi-definite: no Cholesky factor of F + σI");
        }
        sigma = shift;
        // W = U Q in place (dpotrf leaves the strict lower triangle as it was: trmm reads only the upper one)
        openblas.cblas_dtrmm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, n, n, 1.0, upper, n, rotated, n);
        rayleigh = new double[n];
        DoubleBuffer w = rotated.asBuffer();
        for (int i = 0; i < n; i++) {
            int row = i * n;
            for (int k = 0; k < n; k++) {
                double x = w.get(row + k);
                rayleigh[k] += x * x;
            }
        }
        double diag = 0;
        for (int k = 0; k < n; k++) {
            rayleigh[k] -= sigma;
            diag += rayleigh[k] * rayleigh[k];
        }
        drift = all == 0 ? 0 : Math.sqrt(Math.max(0, all - diag) / all);
    }

    /** ‖QᵀFQ − diag(QᵀFQ)‖_F / ‖F‖_F (0 for F = 0). */
    public double drift() {
        return drift;
    }

    /** Rayleigh quotients q_kᵀ F q_k, in the previous basis's column order (a copy). */
    public double[] rayleighQuotients() {
        return rayleigh.clone();
    }

    /** A basis update: vectors n x n row-major (columns in the previous basis's order) and their eigenvalue estimates. */
    public record Update(double[] vectors, double[] values) {
    }

    /**
     * The first-order Cayley update of the previous basis (see the class comment); empty when the
     * solve fails or anything comes out non-finite (the caller decomposes instead).
     */
    public Optional<Update> firstOrderUpdate() {
        long nn = (long) n * n;
        try (DoublePointer m = new DoublePointer(nn); IntPointer pivots = new IntPointer(n)) {
            // M + σI = WᵀW, upper triangle (row-major)
            openblas.cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, n, 1.0, rotated, n, 0.0, m, n);
            DoubleBuffer mb = m.asBuffer();
            DoubleBuffer a = upper.asBuffer(); // the Cholesky factor is no longer needed: I − K/2 goes here
            double[] values = rayleigh.clone();
            for (int j = 0; j < n; j++) {
                a.put(j * n + j, 1.0);
                for (int k = j + 1; k < n; k++) {
                    double s = mb.get(j * n + k);
                    double gap = rayleigh[k] - rayleigh[j];
                    double kjk = 0;
                    if (Math.abs(s) < GUARD * Math.abs(gap)) {
                        kjk = s / gap;
                        values[k] += s * kjk;
                        values[j] -= s * kjk;
                    }
                    a.put(j * n + k, -0.5 * kjk);
                    a.put(k * n + j, 0.5 * kjk);
                }
            }
            // Z = Q (I − K/2)⁻¹: Zᵀ solves (I − K/2)ᵀ Zᵀ = Qᵀ, and a row-major n x n array read column-major is its
            // transpose, so the row-major I − K/2 and Q are handed to the column-major solver as they are
            DoubleBuffer z = rotated.asBuffer();
            z.put(0, previous);
            int info = LargeStack.call("dgesv", () -> openblas.LAPACKE_dgesv(LAPACK_COL_MAJOR, n, n, upper, n, pivots, rotated, n));
            if (info != 0) {
                return Optional.empty();
            }
            double[] vectors = new double[(int) nn];
            for (int i = 0; i < vectors.length; i++) {
                vectors[i] = 2.0 * z.get(i) - previous[i];
                if (!Double.isFinite(vectors[i])) {
                    return Optional.empty();
                }
            }
            for (double v : values) {
                if (!Double.isFinite(v)) {
                    return Optional.empty();
                }
            }
            return Optional.of(new Update(vectors, values));
        }
    }

    @Override
    public void close() {
        upper.close();
        rotated.close();
    }
}
