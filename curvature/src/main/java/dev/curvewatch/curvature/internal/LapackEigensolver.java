package dev.curvewatch.curvature.internal;

import static org.bytedeco.openblas.global.openblas.LAPACK_COL_MAJOR;

import dev.curvewatch.curvature.EigenResult;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import java.nio.DoubleBuffer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.openblas.global.openblas;

/**
 * LAPACK divide-and-conquer {@code dsyevd}/{@code ssyevd} from the bundled OpenBLAS. Works on
 * off-heap copies freed before returning. A symmetric matrix reads the same in either layout,
 * so LAPACK runs column-major (no transposing copy inside LAPACKE) and its output, eigenvectors
 * as columns in column-major order, is reordered once into descending row-major columns.
 */
public final class LapackEigensolver implements SymmetricEigensolver {

    @Override
    public String name() {
        return "openblas-lapack-syevd";
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
    public EigenResult decompose(double[] matrix, int n, Precision precision) {
        if (n <= 0 || matrix.length != (long) n * n) {
            return EigenResult.failure("matrix has " + matrix.length + " entries, expected " + n + "x" + n);
        }
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                double v = matrix[i * n + j];
                if (!Double.isFinite(v)) {
                    return EigenResult.failure("non-finite value " + v + " at row " + i + ", column " + j);
                }
            }
        }
        return precision == Precision.FLOAT64 ? decompose64(matrix, n) : decompose32(matrix, n);
    }

    private static EigenResult decompose64(double[] matrix, int n) {
        try (DoublePointer a = new DoublePointer(matrix); DoublePointer w = new DoublePointer(n)) {
            // uplo 'L' in column-major = upper triangle in row-major
            int info = openblas.LAPACKE_dsyevd(LAPACK_COL_MAJOR, (byte) 'V', (byte) 'L', n, a, n, w);
            if (info != 0) {
                return EigenResult.failure("LAPACK dsyevd info=" + info);
            }
            double[] values = new double[n];
            w.get(values);
            return EigenResult.success(descending(n, values, a.asBuffer(), Precision.FLOAT64));
        }
    }

    private static EigenResult decompose32(double[] matrix, int n) {
        float[] narrow = new float[matrix.length];
        for (int i = 0; i < narrow.length; i++) {
            narrow[i] = (float) matrix[i];
        }
        // workspace sized by hand: the LAPACK query rounds it wrongly at n = 4096 (STACK.md)
        long lwork = 1 + 6L * n + 2L * n * n;
        int liwork = 3 + 5 * n;
        if (lwork > Integer.MAX_VALUE) {
            return EigenResult.failure("ssyevd workspace too large for n=" + n);
        }
        try (FloatPointer a = new FloatPointer(narrow); FloatPointer w = new FloatPointer(n);
             FloatPointer work = new FloatPointer(lwork); IntPointer iwork = new IntPointer(liwork)) {
            int info = openblas.LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, (byte) 'V', (byte) 'L', n, a, n, w, work,
                    (int) lwork, iwork, liwork);
            if (info != 0) {
                return EigenResult.failure("LAPACK ssyevd info=" + info);
            }
            float[] wf = new float[n];
            w.get(wf);
            float[] af = new float[n * n];
            a.get(af);
            double[] values = new double[n];
            for (int i = 0; i < n; i++) {
                values[i] = wf[i];
            }
            return EigenResult.success(descending(n, values, DoubleBuffer.wrap(widen(af)), Precision.FLOAT32));
        }
    }

    private static double[] widen(float[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
    }

    /** LAPACK's ascending pairs → descending, clamped values and row-major column vectors. */
    private static Eigenbasis descending(int n, double[] ascending, DoubleBuffer colMajor, Precision precision) {
        double[] values = new double[n];
        for (int c = 0; c < n; c++) {
            values[c] = Math.max(ascending[n - 1 - c], 0);
        }
        // vectors[r][c] = LAPACK column (n-1-c) entry r: a transpose with reversed columns, in tiles
        // so that neither side is walked with stride n for long (2-3x faster than the plain loop)
        double[] vectors = new double[n * n];
        final int tile = 64;
        for (int c0 = 0; c0 < n; c0 += tile) {
            int c1 = Math.min(n, c0 + tile);
            for (int r0 = 0; r0 < n; r0 += tile) {
                int r1 = Math.min(n, r0 + tile);
                for (int c = c0; c < c1; c++) {
                    int src = (n - 1 - c) * n;
                    for (int r = r0; r < r1; r++) {
                        vectors[r * n + c] = colMajor.get(src + r);
                    }
                }
            }
        }
        return Eigenbasis.owning(n, values, vectors, ascending[0], precision);
    }
}
