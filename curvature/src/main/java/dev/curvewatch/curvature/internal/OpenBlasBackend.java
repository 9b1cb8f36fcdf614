package dev.curvewatch.curvature.internal;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.CblasTrans;
import static org.bytedeco.openblas.global.openblas.CblasUpper;

import dev.curvewatch.curvature.spi.BlasBackend;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import org.bytedeco.openblas.global.openblas;

/**
 * CPU kernels from the OpenBLAS bundled in {@code org.bytedeco:openblas}. Direct buffers are
 * passed by address; heap buffers go through JNI array pinning.
 */
public final class OpenBlasBackend implements BlasBackend {

    @Override
    public String name() {
        return "openblas";
    }

    @Override
    public int priority() {
        return 10;
    }

    @Override
    public boolean isAvailable() {
        return OpenBlasLibrary.isLoaded();
    }

    @Override
    public void syrkUpper(int n, int k, float alpha, FloatBuffer x, float beta, FloatBuffer c) {
        openblas.cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, alpha, atZero(x), n, beta, atZero(c), n);
    }

    @Override
    public void syrkUpper(int n, int k, double alpha, DoubleBuffer x, double beta, DoubleBuffer c) {
        openblas.cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, alpha, atZero(x), n, beta, atZero(c), n);
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha, DoubleBuffer a, int lda,
                     DoubleBuffer b, int ldb, double beta, DoubleBuffer c, int ldc) {
        openblas.cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, atZero(a), lda, atZero(b), ldb, beta, atZero(c), ldc);
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, FloatBuffer a, int lda,
                     FloatBuffer b, int ldb, float beta, FloatBuffer c, int ldc) {
        openblas.cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, atZero(a), lda, atZero(b), ldb, beta, atZero(c), ldc);
    }

    /** The SPI reads from index 0 whatever the caller's position. */
    private static FloatBuffer atZero(FloatBuffer b) {
        return b.position() == 0 ? b : b.duplicate().position(0);
    }

    private static DoubleBuffer atZero(DoubleBuffer b) {
        return b.position() == 0 ? b : b.duplicate().position(0);
    }
}
