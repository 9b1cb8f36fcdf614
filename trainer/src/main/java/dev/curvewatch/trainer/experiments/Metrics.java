package dev.curvewatch.trainer.experiments;

import java.util.Arrays;
import java.util.Random;

/** Accuracy, cross-entropy, AUROC and softmax sampling for the experiments. */
public final class Metrics {

    private Metrics() {
    }

    public static int[] argmax(float[] logits, int n, int classes) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int c = 1; c < classes; c++) {
                if (logits[i * classes + c] > logits[i * classes + best]) {
                    best = c;
                }
            }
            out[i] = best;
        }
        return out;
    }

    /** Per-example cross-entropy (nats). */
    /** Fisher–Yates shuffle of {@code order} in place (one {@code nextInt} per position, from the end). */
    public static void shuffle(int[] order, Random random) {
        for (int i = order.length - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }

    /**
     * A class drawn from softmax(logits[offset .. offset + k)) with one {@code random.nextDouble()}:
     * the sampled-label Fisher's labels.
     */
    public static int sampleFromLogits(float[] logits, int offset, int k, Random random) {
        double max = Double.NEGATIVE_INFINITY;
        for (int c = 0; c < k; c++) {
            max = Math.max(max, logits[offset + c]);
        }
        double[] p = new double[k];
        double sum = 0;
        for (int c = 0; c < k; c++) {
            p[c] = Math.exp(logits[offset + c] - max);
            sum += p[c];
        }
        double u = random.nextDouble() * sum;
        for (int c = 0; c < k; c++) {
            u -= p[c];
            if (u <= 0) {
                return c;
            }
        }
        return k - 1;
    }

    public static double[] crossEntropy(float[] logits, int[] labels, int classes) {
        int n = labels.length;
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int c = 0; c < classes; c++) {
                max = Math.max(max, logits[i * classes + c]);
            }
            double sum = 0;
            for (int c = 0; c < classes; c++) {
                sum += Math.exp(logits[i * classes + c] - max);
            }
            out[i] = max + Math.log(sum) - logits[i * classes + labels[i]];
        }
        return out;
    }

    /** How many entries are true. */
    public static int countTrue(boolean[] b) {
        int n = 0;
        for (boolean x : b) {
            n += x ? 1 : 0;
        }
        return n;
    }

    public static double mean(double[] v) {
        return Arrays.stream(v).average().orElse(Double.NaN);
    }

    /** Share of examples (where {@code mask} is null or true) with prediction equal to label. */
    public static double agreement(int[] predicted, int[] labels, boolean[] mask, boolean maskValue) {
        int hit = 0;
        int total = 0;
        for (int i = 0; i < predicted.length; i++) {
            if (mask == null || mask[i] == maskValue) {
                total++;
                hit += predicted[i] == labels[i] ? 1 : 0;
            }
        }
        return total == 0 ? Double.NaN : (double) hit / total;
    }

    /** AUROC of scores for positives vs negatives (Mann-Whitney, ties count half). */
    public static double auroc(double[] scores, boolean[] positive) {
        Integer[] order = new Integer[scores.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (p, q) -> Double.compare(scores[p], scores[q]));
        double rankSumPositive = 0;
        long positives = 0;
        int i = 0;
        while (i < order.length) {
            int j = i;
            while (j + 1 < order.length && scores[order[j + 1]] == scores[order[i]]) {
                j++;
            }
            double rank = (i + j) / 2.0 + 1;
            for (int k = i; k <= j; k++) {
                if (positive[order[k]]) {
                    rankSumPositive += rank;
                    positives++;
                }
            }
            i = j + 1;
        }
        long negatives = scores.length - positives;
        if (positives == 0 || negatives == 0) {
            return Double.NaN;
        }
        return (rankSumPositive - positives * (positives + 1) / 2.0) / ((double) positives * negatives);
    }

    /** ROC curve points (false positive rate, true positive rate), descending threshold. */
    public static double[][] roc(double[] scores, boolean[] positive) {
        Integer[] order = new Integer[scores.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (p, q) -> Double.compare(scores[q], scores[p]));
        long pos = countTrue(positive);
        long neg = scores.length - pos;
        double[][] pts = new double[scores.length + 1][];
        pts[0] = new double[] {0, 0};
        long tp = 0;
        long fp = 0;
        for (int k = 0; k < order.length; k++) {
            if (positive[order[k]]) {
                tp++;
            } else {
                fp++;
            }
            pts[k + 1] = new double[] {neg == 0 ? 0 : (double) fp / neg, pos == 0 ? 0 : (double) tp / pos};
        }
        return pts;
    }
}
