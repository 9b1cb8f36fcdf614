package dev.curvewatch.curvature.nd4j;

import dev.curvewatch.curvature.spi.BlasBackend;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;

/**
 * {@link BlasBackend} over ND4J: the CPU backend (nd4j-native, OpenBLAS inside) by default, or
 * CUDA when the {@code cuda} Maven profile puts nd4j-cuda-11.6 on the class path instead. On CUDA it
 * outranks the OpenBLAS backend (priority 100), so {@code BlasBackends.best()} and with it every
 * {@code FactorAccumulator} of a worker runs its products on the GPU; on CPU it ranks below OpenBLAS.
 *
 * <p>The SPI hands over host buffers per call, so each product copies X to the device and the
 * n x n result back: the O(k n²) product runs on the GPU, the O(n²) transfers do not amortise for
 * small token counts. Keeping the running sum resident on the device needs an SPI that owns
 * device memory (noted in workers/README.md).
 */
public final class Nd4jBlasBackend implements BlasBackend {
    private static volatile Boolean available;
    private static volatile String unavailableReason;

    @Override
    public String name() {
        return "nd4j-" + (isCuda() ? "cuda" : "cpu");
    }

    @Override
    public int priority() {
        return isAvailable() && isCuda() ? 100 : 5;
    }

    /**
     * Whether ND4J initialises here. A CUDA build on a machine without a usable GPU is not
     * available (ND4J throws from its static initialiser), so {@code BlasBackends.best()} falls
     * back to the OpenBLAS backend; {@link #unavailableReason()} says why.
     */
    @Override
    public boolean isAvailable() {
        Boolean a = available;
        if (a == null) {
            try {
                Nd4j.getBackend();
                Nd4j.create(new float[]{1f}, new long[]{1}, 'c');
                a = true;
            } catch (Throwable t) {
                Throwable root = t;
                while (root.getCause() != null && root.getCause() != root) {
                    root = root.getCause();
                }
                unavailableReason = root.getClass().getSimpleName() + ": " + root.getMessage();
                a = false;
            }
            available = a;
        }
        return a;
    }

    /** Why ND4J did not initialise (the innermost cause), or null while it is available or untried. */
    public static String unavailableReason() {
        return unavailableReason;
    }

    /** True when ND4J runs on the CUDA backend. */
    public static boolean isCuda() {
        try {
            return Nd4j.getBackend().getClass().getName().toLowerCase().contains("cublas");
        } catch (Throwable t) {
            return false;
        }
    }

    @Override
    public void syrkUpper(int n, int k, float alpha, FloatBuffer x, float beta, FloatBuffer c) {
        float[] xs = new float[k * n];
        x.get(0, xs);
        INDArray xm = Nd4j.create(xs, new long[]{k, n}, 'c');
        INDArray p = Nd4j.gemm(xm, xm, true, false);
        float[] prod = p.dup('c').data().asFloat();
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                int idx = i * n + j;
                c.put(idx, alpha * prod[idx] + (beta == 0f ? 0f : beta * c.get(idx)));
            }
        }
    }

    @Override
    public void syrkUpper(int n, int k, double alpha, DoubleBuffer x, double beta, DoubleBuffer c) {
        double[] xs = new double[k * n];
        x.get(0, xs);
        INDArray xm = Nd4j.create(xs, new long[]{k, n}, 'c');
        INDArray p = Nd4j.gemm(xm, xm, true, false);
        double[] prod = p.dup('c').data().asDouble();
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                int idx = i * n + j;
                c.put(idx, alpha * prod[idx] + (beta == 0 ? 0 : beta * c.get(idx)));
            }
        }
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha, DoubleBuffer a, int lda,
                     DoubleBuffer b, int ldb, double beta, DoubleBuffer c, int ldc) {
        INDArray am = Nd4j.create(compact(a, transA ? k : m, transA ? m : k, lda), new long[]{transA ? k : m, transA ? m : k}, 'c');
        INDArray bm = Nd4j.create(compact(b, transB ? n : k, transB ? k : n, ldb), new long[]{transB ? n : k, transB ? k : n}, 'c');
        double[] prod = Nd4j.gemm(am, bm, transA, transB).dup('c').data().asDouble();
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                int idx = i * ldc + j;
                c.put(idx, alpha * prod[i * n + j] + (beta == 0 ? 0 : beta * c.get(idx)));
            }
        }
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, FloatBuffer a, int lda,
                     FloatBuffer b, int ldb, float beta, FloatBuffer c, int ldc) {
        INDArray am = Nd4j.create(compact(a, transA ? k : m, transA ? m : k, lda), new long[]{transA ? k : m, transA ? m : k}, 'c');
        INDArray bm = Nd4j.create(compact(b, transB ? n : k, transB ? k : n, ldb), new long[]{transB ? n : k, transB ? k : n}, 'c');
        float[] prod = Nd4j.gemm(am, bm, transA, transB).dup('c').data().asFloat();
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                int idx = i * ldc + j;
                c.put(idx, alpha * prod[i * n + j] + (beta == 0f ? 0f : beta * c.get(idx)));
            }
        }
    }

    private static double[] compact(DoubleBuffer src, int rows, int cols, int ld) {
        double[] out = new double[rows * cols];
        for (int r = 0; r < rows; r++) {
            src.get(r * ld, out, r * cols, cols);
        }
        return out;
    }

    private static float[] compact(FloatBuffer src, int rows, int cols, int ld) {
        float[] out = new float[rows * cols];
        for (int r = 0; r < rows; r++) {
            src.get(r * ld, out, r * cols, cols);
        }
        return out;
    }
}
