package dev.curvewatch.trainer.experiments;

import java.util.Random;

/**
 * Generated 10-class data: class means ~ N(0, separation² I) in {@code dim} dimensions, inputs
 * mean + N(0, I). A fraction of the training labels is flipped to a uniformly chosen other class.
 */
public record NoisyLabelData(int dim, int classes, Split train, Split test, Split probes, boolean[] flipped,
                             int[] trainLabels) {

    /** Inputs (n x dim) and their true labels. */
    public record Split(int n, float[] x, int[] y) {
    }

    public static NoisyLabelData generate(long seed, int dim, int classes, double separation, int nTrain,
                                          int nTest, int nProbes, double noise) {
        Random random = new Random(seed);
        float[] means = new float[classes * dim];
        for (int i = 0; i < means.length; i++) {
            means[i] = (float) (random.nextGaussian() * separation);
        }
        Split train = split(random, means, dim, classes, nTrain);
        Split test = split(random, means, dim, classes, nTest);
        Split probes = split(random, means, dim, classes, nProbes);
        boolean[] flipped = new boolean[nTrain];
        int[] labels = train.y().clone();
        for (int i = 0; i < nTrain; i++) {
            if (random.nextDouble() < noise) {
                flipped[i] = true;
                labels[i] = (labels[i] + 1 + random.nextInt(classes - 1)) % classes;
            }
        }
        return new NoisyLabelData(dim, classes, train, test, probes, flipped, labels);
    }

    private static Split split(Random random, float[] means, int dim, int classes, int n) {
        float[] x = new float[n * dim];
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            y[i] = random.nextInt(classes);
            for (int d = 0; d < dim; d++) {
                x[i * dim + d] = means[y[i] * dim + d] + (float) random.nextGaussian();
            }
        }
        return new Split(n, x, y);
    }

    /** A run whose flipped labels are never injected (a clean control), for {@link #labelsForEpoch}. */
    public static final int NEVER = Integer.MAX_VALUE;

    /**
     * The labels trained on in {@code epoch} (0-based) when the flipped labels are injected at
     * {@code injectAt}: the true labels for epochs before it, the flipped ones ({@link #trainLabels})
     * from it on. {@code injectAt = 0} is a run noisy from the start, {@link #NEVER} a clean one. The
     * arrays are shared, not copied: callers only read them.
     */
    public int[] labelsForEpoch(int epoch, int injectAt) {
        if (injectAt < 0) {
            throw new IllegalArgumentException("injection epoch must be >= 0, got " + injectAt);
        }
        return epoch >= injectAt ? trainLabels : train.y();
    }

    public int flippedCount() {
        int c = 0;
        for (boolean f : flipped) {
            c += f ? 1 : 0;
        }
        return c;
    }
}
