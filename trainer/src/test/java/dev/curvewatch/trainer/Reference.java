package dev.curvewatch.trainer;

/**
 * Independent fp64 references for the tests: the MLP's forward pass and cross-entropy written out
 * as loops (no DJL), and the curvature edit W' = U_G ((U_Gᵀ W U_A) ⊙ M) U_Aᵀ with the mask taken
 * straight from the thresholds, M_ij = [λ_i μ_j ≥ τ] (no CurvatureEdit, no KeepMassSelector).
 */
final class Reference {
    private Reference() {
    }

    /** Logits (n x classes) of a ReLU MLP with weights[l] d_out x d_in row-major. */
    static double[] logits(float[][] weights, float[][] biases, int[] dims, float[] x, int n) {
        double[] h = new double[n * dims[0]];
        for (int i = 0; i < h.length; i++) {
            h[i] = x[i];
        }
        for (int l = 0; l < weights.length; l++) {
            int in = dims[l];
            int out = dims[l + 1];
            double[] s = new double[n * out];
            for (int e = 0; e < n; e++) {
                for (int o = 0; o < out; o++) {
                    double acc = biases[l][o];
                    for (int k = 0; k < in; k++) {
                        acc += (double) weights[l][o * in + k] * h[e * in + k];
                    }
                    s[e * out + o] = l < weights.length - 1 ? Math.max(0, acc) : acc;
                }
            }
            h = s;
        }
        return h;
    }

    static double crossEntropy(double[] logits, int row, int classes, int label) {
        double max = Double.NEGATIVE_INFINITY;
        for (int c = 0; c < classes; c++) {
            max = Math.max(max, logits[row * classes + c]);
        }
        double sum = 0;
        for (int c = 0; c < classes; c++) {
            sum += Math.exp(logits[row * classes + c] - max);
        }
        return max + Math.log(sum) - logits[row * classes + label];
    }

    static int argmax(double[] logits, int row, int classes) {
        int best = 0;
        for (int c = 1; c < classes; c++) {
            if (logits[row * classes + c] > logits[row * classes + best]) {
                best = c;
            }
        }
        return best;
    }

    /** Gap between the largest and second-largest logit of a row (near-ties may flip an argmax). */
    static double margin(double[] logits, int row, int classes) {
        double a = Double.NEGATIVE_INFINITY;
        double b = Double.NEGATIVE_INFINITY;
        for (int c = 0; c < classes; c++) {
            double v = logits[row * classes + c];
            if (v > a) {
                b = a;
                a = v;
            } else if (v > b) {
                b = v;
            }
        }
        return a - b;
    }

    /**
     * W' for ug (m x m), ua (n x n) row-major with eigenvectors in columns, the mask
     * λ_i μ_j ≥ tau; all in fp64 loops.
     */
    static float[] edit(float[] w, int m, int n, double[] ug, double[] ua, double[] lambda, double[] mu, double tau) {
        double[] t = new double[m * n]; // W U_A
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int k = 0; k < n; k++) {
                    acc += w[i * n + k] * ua[k * n + j];
                }
                t[i * n + j] = acc;
            }
        }
        double[] c = new double[m * n]; // U_Gᵀ W U_A, masked
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int k = 0; k < m; k++) {
                    acc += ug[k * m + i] * t[k * n + j];
                }
                c[i * n + j] = lambda[i] * mu[j] >= tau ? acc : 0;
            }
        }
        double[] u = new double[m * n]; // C U_Aᵀ
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int k = 0; k < n; k++) {
                    acc += c[i * n + k] * ua[j * n + k];
                }
                u[i * n + j] = acc;
            }
        }
        float[] out = new float[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int k = 0; k < m; k++) {
                    acc += ug[i * m + k] * u[k * n + j];
                }
                out[i * n + j] = (float) acc;
            }
        }
        return out;
    }

    /** Number of pairs with λ_i μ_j ≥ tau. */
    static long kept(double[] lambda, double[] mu, double tau) {
        long k = 0;
        for (double l : lambda) {
            for (double u : mu) {
                k += l * u >= tau ? 1 : 0;
            }
        }
        return k;
    }
}
