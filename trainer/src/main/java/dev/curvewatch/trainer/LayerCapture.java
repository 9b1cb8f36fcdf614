package dev.curvewatch.trainer;

/**
 * One step's capture of a linear layer: inputs a (tokens x d_in) and output-gradients g
 * (tokens x d_out, per-token scale), row-major. For the MLP one token is one example.
 */
public record LayerCapture(int layer, int tokens, int dIn, int dOut, float[] a, float[] g) {
}
