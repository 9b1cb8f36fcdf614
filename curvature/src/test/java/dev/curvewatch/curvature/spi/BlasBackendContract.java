package dev.curvewatch.curvature.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.FactorMode;
import dev.curvewatch.curvature.Golden;
import dev.curvewatch.curvature.Precision;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * What every {@link BlasBackend} must do; a backend module subclasses this (from curvature's
 * test-jar) and returns its backend. Results are compared with plain-Java products, fp64 to
 * 1e-12 relative and fp32 to 1e-5 relative.
 */
public abstract class BlasBackendContract {

    protected abstract BlasBackend backend();

    private final Random random = new Random(7);

    @Test
    void isAvailableAndNamed() {
        assertTrue(backend().isAvailable());
        assertTrue(!backend().name().isBlank());
    }

    @ParameterizedTest
    @CsvSource({"1,1", "5,3", "17,40", "64,9"})
    void doubleSyrkFillsUpperTriangleAndLeavesLowerAlone(int n, int k) {
        double[] x = randomDoubles(k * n);
        double[] c0 = randomDoubles(n * n);
        DoubleBuffer c = direct64(c0);
        backend().syrkUpper(n, k, 0.5, direct64(x), 2.0, c);
        double[] expected = naiveSyrk(n, k, x);
        double[] actualUpper = new double[n * n];
        double[] expectedUpper = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                if (j >= i) {
                    actualUpper[i * n + j] = c.get(i * n + j);
                    expectedUpper[i * n + j] = 0.5 * expected[i * n + j] + 2.0 * c0[i * n + j];
                } else {
                    assertEquals(c0[i * n + j], c.get(i * n + j), "lower triangle written at " + i + "," + j);
                }
            }
        }
        assertTrue(Golden.relativeError(actualUpper, expectedUpper) < 1e-12);
    }

    @ParameterizedTest
    @CsvSource({"3,2", "33,70"})
    void floatSyrkMatchesNaiveProduct(int n, int k) {
        double[] x = randomDoubles(k * n);
        float[] xf = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            xf[i] = (float) x[i];
            x[i] = xf[i];
        }
        FloatBuffer c = direct32(new float[n * n]);
        backend().syrkUpper(n, k, 1.0f, direct32(xf), 0.0f, c);
        double[] expected = naiveSyrk(n, k, x);
        double[] actual = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                actual[i * n + j] = j >= i ? c.get(i * n + j) : expected[i * n + j];
            }
        }
        assertTrue(Golden.relativeError(actual, expected) < 1e-5);
    }

    @ParameterizedTest
    @CsvSource({"false,false", "true,false", "false,true", "true,true"})
    void gemmHonoursTransposeFlagsOnHeapAndDirectBuffers(boolean ta, boolean tb) {
        int m = 7;
        int n = 5;
        int k = 11;
        double[] a = randomDoubles(m * k);
        double[] b = randomDoubles(k * n);
        double[] expected = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) {
                    s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                }
                expected[i * n + j] = s;
            }
        }
        double[] heap = new double[m * n];
        backend().gemm(ta, tb, m, n, k, 1.0, DoubleBuffer.wrap(a), ta ? m : k, DoubleBuffer.wrap(b), tb ? k : n,
                0.0, DoubleBuffer.wrap(heap), n);
        assertTrue(Golden.relativeError(heap, expected) < 1e-12, "heap buffers");
        DoubleBuffer c = direct64(new double[m * n]);
        backend().gemm(ta, tb, m, n, k, 1.0, direct64(a), ta ? m : k, direct64(b), tb ? k : n, 0.0, c, n);
        double[] direct = new double[m * n];
        c.get(0, direct);
        assertTrue(Golden.relativeError(direct, expected) < 1e-12, "direct buffers");

        float[] af = new float[a.length];
        float[] bf = new float[b.length];
        for (int i = 0; i < a.length; i++) {
            af[i] = (float) a[i];
        }
        for (int i = 0; i < b.length; i++) {
            bf[i] = (float) b[i];
        }
        float[] cf = new float[m * n];
        backend().gemm(ta, tb, m, n, k, 1.0f, FloatBuffer.wrap(af), ta ? m : k, FloatBuffer.wrap(bf), tb ? k : n,
                0.0f, FloatBuffer.wrap(cf), n);
        double[] widened = new double[cf.length];
        for (int i = 0; i < cf.length; i++) {
            widened[i] = cf[i];
        }
        assertTrue(Golden.relativeError(widened, expected) < 1e-5, "float gemm");
    }

    @Test
    void factorAccumulatorOnThisBackendMatchesReference() {
        double[] expected = Golden.doubles("factor.cumulative_mean");
        float[] x = Golden.floats("factor.x");
        for (Precision p : Precision.values()) {
            FactorAccumulator acc = FactorAccumulator.create(24, p, FactorMode.CUMULATIVE, 1.0, backend());
            acc.add(0, x, x.length / 24);
            double tol = p == Precision.FLOAT64 ? 1e-12 : 1e-5;
            assertTrue(Golden.relativeError(acc.mean(), expected) < tol, p.toString());
        }
    }

    private double[] randomDoubles(int count) {
        double[] v = new double[count];
        for (int i = 0; i < count; i++) {
            v[i] = random.nextGaussian();
        }
        return v;
    }

    private static double[] naiveSyrk(int n, int k, double[] x) {
        double[] c = new double[n * n];
        for (int t = 0; t < k; t++) {
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    c[i * n + j] += x[t * n + i] * x[t * n + j];
                }
            }
        }
        return c;
    }

    private static DoubleBuffer direct64(double[] v) {
        DoubleBuffer b = ByteBuffer.allocateDirect(v.length * 8).order(ByteOrder.nativeOrder()).asDoubleBuffer();
        b.put(0, v);
        return b;
    }

    private static FloatBuffer direct32(float[] v) {
        FloatBuffer b = ByteBuffer.allocateDirect(v.length * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
        b.put(0, v);
        return b;
    }
}
