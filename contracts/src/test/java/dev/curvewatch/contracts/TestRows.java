package dev.curvewatch.contracts;

import java.util.Random;

/** Deterministic activation rows for checkpoint tests: rows i of a layer are a function of (seed, layer, i). */
final class TestRows {
    private TestRows() {
    }

    /** tokens x dim values in [-1, 1). */
    static float[] of(long seed, String layer, int i, int tokens, int dim) {
        Random r = new Random(seed * 31 + layer.hashCode() * 7L + i * 1_000_003L);
        float[] v = new float[tokens * dim];
        for (int k = 0; k < v.length; k++) {
            v[k] = r.nextFloat() * 2 - 1;
        }
        return v;
    }
}
