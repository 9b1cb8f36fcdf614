package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.LayerCapture;

import org.junit.jupiter.api.Test;

import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The zero-probe capture against an independent reference: manual fp64 backprop of the same
 * 3-layer ReLU MLP and mean cross-entropy, written out by hand (no autograd), and DJL's own
 * weight gradients (Σ_t g_t a_tᵀ / n must equal ∂loss/∂W when g carries the per-token scale).
 */
class CaptureTest {

    @Test
    void capturedInputsAndGradientsMatchManualBackprop() {
        int n = 7;
        int[] dims = {5, 6, 4, 3};
        Random random = new Random(42);
        float[] x = new float[n * dims[0]];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) random.nextGaussian();
        }
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            y[i] = random.nextInt(dims[3]);
        }
        try (Mlp mlp = new Mlp(3, dims)) {
            for (int l = 0; l < 3; l++) {
                float[] b = mlp.bias(l);
                for (int i = 0; i < b.length; i++) {
                    b[i] = (float) (0.1 * random.nextGaussian());
                }
            }
            Mlp.StepResult r = mlp.forwardBackward(x, y, n, Set.of(0, 1, 2));
            // reference forward
            double[][] acts = new double[4][];
            double[][] pre = new double[3][];
            acts[0] = new double[n * dims[0]];
            for (int i = 0; i < x.length; i++) {
                acts[0][i] = x[i];
            }
            for (int l = 0; l < 3; l++) {
                int in = dims[l];
                int out = dims[l + 1];
                pre[l] = new double[n * out];
                acts[l + 1] = new double[n * out];
                for (int t = 0; t < n; t++) {
                    for (int o = 0; o < out; o++) {
                        double s = mlp.bias(l)[o];
                        for (int i = 0; i < in; i++) {
                            s += (double) mlp.weight(l)[o * in + i] * acts[l][t * in + i];
                        }
                        pre[l][t * out + o] = s;
                        acts[l + 1][t * out + o] = l < 2 ? Math.max(0, s) : s;
                    }
                }
            }
            // reference backward, per-token scale: d(loss_t)/d(s) for the summed loss
            double[][] grad = new double[3][];
            int k = dims[3];
            grad[2] = new double[n * k];
            for (int t = 0; t < n; t++) {
                double max = Double.NEGATIVE_INFINITY;
                for (int c = 0; c < k; c++) {
                    max = Math.max(max, pre[2][t * k + c]);
                }
                double sum = 0;
                for (int c = 0; c < k; c++) {
                    sum += Math.exp(pre[2][t * k + c] - max);
                }
                for (int c = 0; c < k; c++) {
                    grad[2][t * k + c] = Math.exp(pre[2][t * k + c] - max) / sum - (c == y[t] ? 1 : 0);
                }
            }
            for (int l = 1; l >= 0; l--) {
                int out = dims[l + 1];
                int next = dims[l + 2];
                grad[l] = new double[n * out];
                for (int t = 0; t < n; t++) {
                    for (int o = 0; o < out; o++) {
                        double s = 0;
                        for (int m = 0; m < next; m++) {
                            s += grad[l + 1][t * next + m] * mlp.weight(l + 1)[m * out + o];
                        }
                        grad[l][t * out + o] = pre[l][t * out + o] > 0 ? s : 0;
                    }
                }
            }
            assertEquals(3, r.captures().size());
            for (LayerCapture cap : r.captures()) {
                int l = cap.layer();
                assertClose(acts[l], cap.a(), 1e-5, "a of layer " + l);
                assertClose(grad[l], cap.g(), 1e-5, "g of layer " + l);
                // Σ_t g_t a_tᵀ / n == DJL's dLoss/dW for the mean loss
                double[] gw = new double[cap.dOut() * cap.dIn()];
                for (int t = 0; t < n; t++) {
                    for (int o = 0; o < cap.dOut(); o++) {
                        for (int i = 0; i < cap.dIn(); i++) {
                            gw[o * cap.dIn() + i] += (double) cap.g()[t * cap.dOut() + o] * cap.a()[t * cap.dIn() + i] / n;
                        }
                    }
                }
                assertClose(gw, r.weightGradients()[l], 1e-5, "sum g a^T of layer " + l);
            }
        }
    }

    private static void assertClose(double[] expected, float[] actual, double relTol, String what) {
        assertEquals(expected.length, actual.length, what + " length");
        double scale = 0;
        for (double e : expected) {
            scale = Math.max(scale, Math.abs(e));
        }
        for (int i = 0; i < expected.length; i++) {
            double err = Math.abs(expected[i] - actual[i]);
            assertTrue(err <= relTol * Math.max(scale, 1e-12), what + "[" + i + "]: " + expected[i] + " vs " + actual[i]);
        }
    }
}
