package dev.curvewatch.trainer;

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
}
