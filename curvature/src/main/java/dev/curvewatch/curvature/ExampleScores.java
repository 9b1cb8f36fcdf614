package dev.curvewatch.curvature;

import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/** Per-example scores keyed by sample id, in order of first appearance in the batch. */
public record ExampleScores(long[] sampleIds, double[] scores) {

    public ExampleScores {
        if (sampleIds.length != scores.length) {
            throw new IllegalArgumentException(sampleIds.length + " ids for " + scores.length + " scores");
        }
        sampleIds = sampleIds.clone();
        scores = scores.clone();
    }

    @Override
    public long[] sampleIds() {
        return sampleIds.clone();
    }

    @Override
    public double[] scores() {
        return scores.clone();
    }

    public int size() {
        return scores.length;
    }

    /** Score of a sample id; NaN if absent. */
    public double scoreOf(long sampleId) {
        for (int i = 0; i < sampleIds.length; i++) {
            if (sampleIds[i] == sampleId) {
                return scores[i];
            }
        }
        return Double.NaN;
    }

    /** The k highest-scoring examples, highest first. */
    public ExampleScores top(int k) {
        int[] order = IntStream.range(0, scores.length).boxed()
                .sorted(Comparator.comparingDouble((Integer i) -> scores[i]).reversed())
                .limit(k).mapToInt(Integer::intValue).toArray();
        long[] ids = new long[order.length];
        double[] s = new double[order.length];
        for (int i = 0; i < order.length; i++) {
            ids[i] = sampleIds[order[i]];
            s[i] = scores[order[i]];
        }
        return new ExampleScores(ids, s);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ExampleScores e && Arrays.equals(sampleIds, e.sampleIds) && Arrays.equals(scores, e.scores);
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(sampleIds) + Arrays.hashCode(scores);
    }

    @Override
    public String toString() {
        return "ExampleScores[n=" + scores.length + "]";
    }
}
