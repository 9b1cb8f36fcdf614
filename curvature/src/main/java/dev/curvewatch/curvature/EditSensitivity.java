package dev.curvewatch.curvature;

import dev.curvewatch.curvature.internal.FiniteScan;
import dev.curvewatch.curvature.internal.NativeMatrix;
import dev.curvewatch.curvature.spi.BlasBackend;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * First-order per-example edit sensitivity from captures (DESIGN §3 signal 1):
 * score(example) = Σ_{t in example} g_tᵀ (W' − W) a_t, the linearised loss change of the edit.
 * Batched as one gemm P = A_tokens (W' − W)ᵀ followed by row-wise dots with g.
 */
public final class EditSensitivity {
    private final BlasBackend blas;

    public EditSensitivity() {
        this(BlasBackends.best());
    }

    public EditSensitivity(BlasBackend blas) {
        this.blas = blas;
    }

    /**
     * @param w current weights, d_out x d_in row-major
     * @param edited edited weights W', same shape
     * @param a layer inputs, tokens x d_in row-major
     * @param g output gradients (per-token scale, DESIGN §2), tokens x d_out row-major
     * @param sampleIds sample id of each token
     */
    public ExampleScores firstOrder(double[] w, double[] edited, int dOut, int dIn, float[] a, float[] g,
                                    long[] sampleIds) {
        int tokens = sampleIds.length;
        if (w.length != (long) dOut * dIn || edited.length != w.length) {
            throw new IllegalArgumentException("weights must be " + dOut + "x" + dIn + ", got " + w.length
                    + " and " + edited.length + " values");
        }
        if (a.length != (long) tokens * dIn || g.length != (long) tokens * dOut) {
            throw new IllegalArgumentException(tokens + " tokens need a of " + ((long) tokens * dIn)
                    + " and g of " + ((long) tokens * dOut) + " values, got " + a.length + " and " + g.length);
        }
        FiniteScan.requireFinite("inputs a", a, 0, tokens, dIn);
        FiniteScan.requireFinite("gradients g", g, 0, tokens, dOut);
        double[] delta = new double[w.length];
        for (int i = 0; i < delta.length; i++) {
            delta[i] = edited[i] - w[i];
        }
        double[] wideA = new double[a.length];
        for (int i = 0; i < a.length; i++) {
            wideA[i] = a[i];
        }
        double[] p;
        try (NativeMatrix am = NativeMatrix.copyOf(wideA); NativeMatrix dm = NativeMatrix.copyOf(delta);
             NativeMatrix pm = NativeMatrix.zeros(tokens * dOut)) {
            blas.gemm(false, true, tokens, dOut, dIn, 1.0, am.buffer(), dIn, dm.buffer(), dIn, 0.0, pm.buffer(), dOut);
            p = pm.toArray();
        }
        Map<Long, Double> byExample = new LinkedHashMap<>();
        for (int t = 0; t < tokens; t++) {
            double dot = 0;
            for (int o = 0; o < dOut; o++) {
                dot += g[t * dOut + o] * p[t * dOut + o];
            }
            byExample.merge(sampleIds[t], dot, Double::sum);
        }
        long[] ids = new long[byExample.size()];
        double[] scores = new double[byExample.size()];
        int k = 0;
        for (Map.Entry<Long, Double> e : byExample.entrySet()) {
            ids[k] = e.getKey();
            scores[k++] = e.getValue();
        }
        return new ExampleScores(ids, scores);
    }
}
