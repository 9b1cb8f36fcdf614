package dev.curvewatch.trainer.experiments;

import java.util.Arrays;

/**
 * When each training example was last trained on, so an answer can score "recent training
 * examples" (each at most once; an example seen again counts from its latest batch). One long per
 * example of the data set.
 */
final class RecentExamples {
    private final int capacity;
    // position of each example in the recency order; a larger stamp is more recent
    private long[] stamp = new long[0];
    private long clock;
    private int size;

    RecentExamples(int capacity) {
        if (capacity < 1) {
            throw new IllegalArgumentException("capacity must be >= 1, got " + capacity);
        }
        this.capacity = capacity;
    }

    void add(int[] indices) {
        for (int i : indices) {
            if (i >= stamp.length) {
                long[] grown = new long[Math.max(i + 1, 2 * stamp.length)];
                System.arraycopy(stamp, 0, grown, 0, stamp.length);
                stamp = grown;
            }
            if (stamp[i] == 0) {
                size++;
            }
            stamp[i] = ++clock;
        }
    }

    /** Up to {@code max} (and at most the capacity) of the most recent examples, ascending by index. */
    int[] latest(int max) {
        int k = Math.min(Math.min(max, capacity), size);
        // stamps are distinct, so the k-th largest one cuts off exactly k examples
        long[] stamps = new long[size];
        int n = 0;
        for (long s : stamp) {
            if (s != 0) {
                stamps[n++] = s;
            }
        }
        Arrays.sort(stamps);
        long cutoff = k == 0 ? Long.MAX_VALUE : stamps[n - k];
        int[] out = new int[k];
        int o = 0;
        for (int i = 0; i < stamp.length && o < k; i++) {
            if (stamp[i] != 0 && stamp[i] >= cutoff) {
                out[o++] = i;
            }
        }
        return out;
    }
}
