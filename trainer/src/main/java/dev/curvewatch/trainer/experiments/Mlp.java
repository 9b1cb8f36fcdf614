package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.LayerCapture;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * A ReLU MLP whose parameters live in Java arrays; every forward/backward runs on DJL (PyTorch
 * engine) in a scoped sub-manager. Keeping the parameters on the heap makes the Adam update, the
 * curvature edit and snapshot loading plain array work, and costs two copies of a few hundred KB
 * per step.
 *
 * <p>Layer l computes s_l = W_l a_l + b_l (W_l is d_out x d_in row-major, named "fc{l+1}").
 * Capture uses the zero-probe trick (STACK.md): s_l + z with z = 0 requiring a gradient, so
 * ∂loss/∂z = ∂loss/∂s_l per token.
 */
public final class Mlp implements AutoCloseable {

    static {
        // DJL must never try its CDN here (STACK.md); the natives come from Maven. Set before the
        // engine loads, so the cli and the demo behave like the tests (surefire passes it too).
        if (System.getProperty("ai.djl.offline") == null) {
            System.setProperty("ai.djl.offline", "true");
        }
    }

    private final int[] dims;
    private final float[][] weights;
    private final float[][] biases;
    private final NDManager manager;
    // Adam state
    private final float[][] mW, vW, mB, vB;
    private long adamStep;

    public Mlp(long seed, int... dims) {
        this.dims = dims.clone();
        int layers = dims.length - 1;
        weights = new float[layers][];
        biases = new float[layers][];
        mW = new float[layers][];
        vW = new float[layers][];
        mB = new float[layers][];
        vB = new float[layers][];
        Random random = new Random(seed);
        for (int l = 0; l < layers; l++) {
            int in = dims[l];
            int out = dims[l + 1];
            weights[l] = new float[out * in];
            double scale = 1.0 / Math.sqrt(in);
            for (int i = 0; i < weights[l].length; i++) {
                weights[l][i] = (float) (random.nextGaussian() * scale);
            }
            biases[l] = new float[out];
            mW[l] = new float[out * in];
            vW[l] = new float[out * in];
            mB[l] = new float[out];
            vB[l] = new float[out];
        }
        manager = NDManager.newBaseManager("PyTorch");
    }

    private Mlp(int[] dims, float[][] weights, float[][] biases) {
        this.dims = dims.clone();
        int layers = dims.length - 1;
        this.weights = new float[layers][];
        this.biases = new float[layers][];
        for (int l = 0; l < layers; l++) {
            this.weights[l] = weights[l].clone();
            this.biases[l] = biases[l].clone();
        }
        mW = vW = mB = vB = null; // a frozen copy is only scored, never trained
        manager = NDManager.newBaseManager("PyTorch");
    }

    /**
     * A copy of the parameters (not the optimizer state) with its own native memory: scoring it
     * on another thread neither sees nor disturbs further training. It cannot be trained; close it.
     */
    public Mlp frozenCopy() {
        return new Mlp(dims, weights, biases);
    }

    public int layers() {
        return dims.length - 1;
    }

    public int inDim(int layer) {
        return dims[layer];
    }

    public int outDim(int layer) {
        return dims[layer + 1];
    }

    public int classes() {
        return dims[dims.length - 1];
    }

    public static String layerName(int layer) {
        return "fc" + (layer + 1);
    }

    /** The live weight array of a layer (d_out x d_in row-major); callers may replace it via {@link #setWeight}. */
    public float[] weight(int layer) {
        return weights[layer];
    }

    public float[] bias(int layer) {
        return biases[layer];
    }

    public void setWeight(int layer, float[] w) {
        if (w.length != weights[layer].length) {
            throw new IllegalArgumentException("layer " + layerName(layer) + " needs " + weights[layer].length
                    + " values, got " + w.length);
        }
        weights[layer] = w.clone();
    }

    /** Copy of all weights, for restoring after an edit is scored. */
    public float[][] copyWeights() {
        float[][] copy = new float[weights.length][];
        for (int l = 0; l < weights.length; l++) {
            copy[l] = weights[l].clone();
        }
        return copy;
    }

    /** Logits (n x classes row-major), no gradients. */
    public float[] logits(float[] x, int n) {
        return logits(x, n, null, -1);
    }

    /** Logits with layer {@code replacedLayer} using {@code replacement} instead of its weight. */
    public float[] logits(float[] x, int n, float[] replacement, int replacedLayer) {
        try (NDManager step = manager.newSubManager()) {
            NDArray h = step.create(x, new Shape(n, dims[0]));
            for (int l = 0; l < layers(); l++) {
                float[] w = l == replacedLayer ? replacement : weights[l];
                NDArray s = h.matMul(step.create(w, new Shape(dims[l + 1], dims[l])).transpose())
                        .add(step.create(biases[l]));
                h = l < layers() - 1 ? s.maximum(0f) : s;
            }
            return h.toFloatArray();
        }
    }

    /** What one forward/backward pass returns. */
    public record StepResult(double loss, float[] perExampleLoss, List<LayerCapture> captures,
                             float[][] weightGradients, float[][] biasGradients) {
    }

    /**
     * Forward and backward with mean cross-entropy against {@code labels}.
     *
     * @param capture layers whose a and g to return; g is multiplied by n to undo the mean
     *                (per-example scale, DESIGN §2)
     */
    public StepResult forwardBackward(float[] x, int[] labels, int n, Set<Integer> capture) {
        try (NDManager step = manager.newSubManager()) {
            int layers = layers();
            NDArray[] w = new NDArray[layers];
            NDArray[] b = new NDArray[layers];
            NDArray[] inputs = new NDArray[layers];
            NDArray[] probes = new NDArray[layers];
            for (int l = 0; l < layers; l++) {
                w[l] = step.create(weights[l], new Shape(dims[l + 1], dims[l]));
                b[l] = step.create(biases[l]);
                w[l].setRequiresGradient(true);
                b[l].setRequiresGradient(true);
            }
            float[] oneHot = new float[n * classes()];
            for (int i = 0; i < n; i++) {
                oneHot[i * classes() + labels[i]] = 1f;
            }
            NDArray target = step.create(oneHot, new Shape(n, classes()));
            float[] perExample;
            double meanLoss;
            List<LayerCapture> captures = new ArrayList<>();
            float[][] wg = new float[layers][];
            float[][] bg = new float[layers][];
            try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                NDArray h = step.create(x, new Shape(n, dims[0]));
                for (int l = 0; l < layers; l++) {
                    inputs[l] = h;
                    NDArray s = h.matMul(w[l].transpose()).add(b[l]);
                    if (capture.contains(l)) {
                        probes[l] = step.zeros(new Shape(n, dims[l + 1]));
                        probes[l].setRequiresGradient(true);
                        s = s.add(probes[l]);
                    }
                    h = l < layers - 1 ? s.maximum(0f) : s;
                }
                NDArray nll = h.logSoftmax(1).mul(target).sum(new int[] {1}).neg();
                NDArray loss = nll.mean();
                gc.backward(loss);
                perExample = nll.toFloatArray();
                meanLoss = loss.getFloat();
                for (int l = 0; l < layers; l++) {
                    wg[l] = w[l].getGradient().toFloatArray();
                    bg[l] = b[l].getGradient().toFloatArray();
                    if (probes[l] != null) {
                        float[] g = probes[l].getGradient().toFloatArray();
                        for (int i = 0; i < g.length; i++) {
                            g[i] *= n;
                        }
                        captures.add(new LayerCapture(l, n, dims[l], dims[l + 1], inputs[l].toFloatArray(), g));
                    }
                }
            }
            return new StepResult(meanLoss, perExample, captures, wg, bg);
        }
    }

    /** One Adam step (lr, β = 0.9/0.999, ε = 1e-8) with the given gradients. */
    public void adam(StepResult result, float lr) {
        if (mW == null) {
            throw new IllegalStateException("a frozen copy of the model is not trained");
        }
        adamStep++;
        double c1 = 1 - Math.pow(0.9, adamStep);
        double c2 = 1 - Math.pow(0.999, adamStep);
        for (int l = 0; l < layers(); l++) {
            adamUpdate(weights[l], result.weightGradients()[l], mW[l], vW[l], lr, c1, c2);
            adamUpdate(biases[l], result.biasGradients()[l], mB[l], vB[l], lr, c1, c2);
        }
    }

    private static void adamUpdate(float[] p, float[] g, float[] m, float[] v, float lr, double c1, double c2) {
        for (int i = 0; i < p.length; i++) {
            m[i] = 0.9f * m[i] + 0.1f * g[i];
            v[i] = 0.999f * v[i] + 0.001f * g[i] * g[i];
            double mh = m[i] / c1;
            double vh = v[i] / c2;
            p[i] -= (float) (lr * mh / (Math.sqrt(vh) + 1e-8));
        }
    }

    @Override
    public void close() {
        manager.close();
    }
}
