package dev.curvewatch.trainer;

import dev.curvewatch.curvature.EditSensitivity;
import dev.curvewatch.curvature.ExampleScores;

/**
 * One step's capture of a linear layer: inputs a (tokens x d_in) and output-gradients g
 * (tokens x d_out, per-token scale), row-major. For the MLP one token is one example.
 */
public record LayerCapture(int layer, int tokens, int dIn, int dOut, float[] a, float[] g) {

    /** The capture restricted to the given token rows, in that order. */
    public LayerCapture rows(int[] keep) {
        float[] ka = new float[keep.length * dIn];
        float[] kg = new float[keep.length * dOut];
        for (int i = 0; i < keep.length; i++) {
            System.arraycopy(a, keep[i] * dIn, ka, i * dIn, dIn);
            System.arraycopy(g, keep[i] * dOut, kg, i * dOut, dOut);
        }
        return new LayerCapture(layer, keep.length, dIn, dOut, ka, kg);
    }

    /**
     * Per token, the first-order loss change gᵀ(W'−W)a of replacing this layer's weight
     * {@code w} by {@code edited} (both d_out x d_in); every token is its own example.
     */
    public double[] firstOrderEditScores(float[] w, float[] edited) {
        double[] wd = new double[w.length];
        double[] ed = new double[w.length];
        for (int i = 0; i < w.length; i++) {
            wd[i] = w[i];
            ed[i] = edited[i];
        }
        long[] ids = new long[tokens];
        for (int i = 0; i < tokens; i++) {
            ids[i] = i;
        }
        ExampleScores scores = new EditSensitivity().firstOrder(wd, ed, dOut, dIn, a, g, ids);
        double[] out = new double[tokens];
        for (int i = 0; i < tokens; i++) {
            out[i] = scores.scoreOf(i);
        }
        return out;
    }
}
