package dev.curvewatch.curvature.spi;

import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;

/**
 * Dense kernels behind factor accumulation, edits and signals. Implementations register through
 * {@link java.util.ServiceLoader}; {@link dev.curvewatch.curvature.BlasBackends#best()} picks the
 * available one with the highest priority. Every matrix is row-major and dense; buffers are read
 * from index 0 (their position is ignored) and may be direct or heap buffers.
 *
 * <p>A backend must pass the abstract {@code BlasBackendContract} suite in curvature's test-jar.
 */
public interface BlasBackend {

    /** Short name used in logs and benchmark tables, e.g. {@code "openblas"}. */
    String name();

    /** Higher wins when several backends are available. */
    int priority();

    /** False when the native library cannot be loaded on this machine. */
    boolean isAvailable();

    /**
     * {@code C = alpha * Xᵀ X + beta * C} on the upper triangle only (i &le; j in row-major terms);
     * the strict lower triangle of {@code c} is neither read nor written.
     *
     * @param n side of C (columns of X)
     * @param k rows of X (tokens)
     * @param x k x n matrix
     * @param c n x n matrix
     */
    void syrkUpper(int n, int k, float alpha, FloatBuffer x, float beta, FloatBuffer c);

    /** Double-precision {@link #syrkUpper(int, int, float, FloatBuffer, float, FloatBuffer)}. */
    void syrkUpper(int n, int k, double alpha, DoubleBuffer x, double beta, DoubleBuffer c);

    /**
     * {@code C = alpha * op(A) op(B) + beta * C}, op(M) = Mᵀ when the flag is set; op(A) is m x k,
     * op(B) is k x n, C is m x n; {@code lda}, {@code ldb}, {@code ldc} are row strides.
     */
    void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha, DoubleBuffer a,
              int lda, DoubleBuffer b, int ldb, double beta, DoubleBuffer c, int ldc);

    /** Single-precision {@link #gemm(boolean, boolean, int, int, int, double, DoubleBuffer, int, DoubleBuffer, int, double, DoubleBuffer, int)}. */
    void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, FloatBuffer a,
              int lda, FloatBuffer b, int ldb, float beta, FloatBuffer c, int ldc);
}
