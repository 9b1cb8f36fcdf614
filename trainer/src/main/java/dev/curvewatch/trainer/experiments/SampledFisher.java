package dev.curvewatch.trainer.experiments;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import dev.curvewatch.trainer.LayerCapture;

import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

/**
 * K-FAC factors of the true Fisher (DESIGN §3): the gradients of labels sampled from the model's
 * own softmax, not of the training labels. The one loop every experiment and the watched training
 * use, so that they all measure the same curvature.
 */
public final class SampledFisher {
    private SampledFisher() {
    }

    /** A (inputs) and G (output gradients) of one layer, cumulative in fp64. */
    public record Factors(FactorAccumulator a, FactorAccumulator g) {
        public static Factors of(Mlp mlp, int layer) {
            return new Factors(FactorAccumulator.cumulative(mlp.inDim(layer), Precision.FLOAT64),
                    FactorAccumulator.cumulative(mlp.outDim(layer), Precision.FLOAT64));
        }

        /** Adds one capture's rows, {@code index} being its step or its first example. */
        public void add(long index, LayerCapture cap) {
            a.add(index, cap.a(), cap.tokens());
            g.add(index, cap.g(), cap.tokens());
        }

        /** The eigenbases of the mean factors (A first, as the experiments always decomposed them). */
        public Bases decompose(SymmetricEigensolver solver) {
            Eigenbasis ea = solver.decompose(a.mean(), a.dim(), Precision.FLOAT64).orThrow();
            Eigenbasis eg = solver.decompose(g.mean(), g.dim(), Precision.FLOAT64).orThrow();
            return new Bases(ea, eg);
        }

        /** The layer's edit from the eigenbases of the mean factors. */
        public CurvatureEdit edit(SymmetricEigensolver solver) {
            return decompose(solver).edit();
        }
    }

    /** A layer's eigenbases of A and G. */
    public record Bases(Eigenbasis a, Eigenbasis g) {
        public CurvatureEdit edit() {
            return new CurvatureEdit(g, a);
        }
    }

    /**
     * The captures of {@code layers} for the batch {@code x} ({@code m} rows) with labels drawn from
     * the model's softmax over {@code classes} (one draw per row, in row order, from {@code random}).
     */
    public static List<LayerCapture> captures(Mlp mlp, float[] x, int m, int classes, Set<Integer> layers,
                                              Random random) {
        float[] logits = mlp.logits(x, m);
        int[] sampled = new int[m];
        for (int i = 0; i < m; i++) {
            sampled[i] = Metrics.sampleFromLogits(logits, i * classes, classes, random);
        }
        return mlp.forwardBackward(x, sampled, m, layers).captures();
    }

    /**
     * The factors of {@code layers} over the {@code n} rows of {@code x} ({@code dim} wide), in
     * chunks of {@code chunk} rows; each chunk's rows are added under the index of its first row.
     */
    public static Map<Integer, Factors> factors(Mlp mlp, float[] x, int n, int dim, int classes, int chunk,
                                                Collection<Integer> layers, Random random) {
        Map<Integer, Factors> acc = new LinkedHashMap<>();
        for (int l : layers) {
            acc.put(l, Factors.of(mlp, l));
        }
        Set<Integer> capture = new LinkedHashSet<>(layers);
        for (int start = 0; start < n; start += chunk) {
            int m = Math.min(chunk, n - start);
            float[] rows = new float[m * dim];
            System.arraycopy(x, start * dim, rows, 0, m * dim);
            for (LayerCapture cap : captures(mlp, rows, m, classes, capture, random)) {
                acc.get(cap.layer()).add(start, cap);
            }
        }
        return acc;
    }
}
