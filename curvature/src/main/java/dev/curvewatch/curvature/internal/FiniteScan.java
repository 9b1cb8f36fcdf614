package dev.curvewatch.curvature.internal;

import java.nio.FloatBuffer;

/** Rejects NaN/Inf before any state changes, naming the first offending entry. */
public final class FiniteScan {
    private FiniteScan() {
    }

    /** Throws {@link IllegalArgumentException} naming row/column/value of the first non-finite entry. */
    public static void requireFinite(String what, float[] data, int offset, int rows, int cols) {
        int end = offset + rows * cols;
        for (int i = offset; i < end; i++) {
            if (!Float.isFinite(data[i])) {
                throw bad(what, (i - offset) / cols, (i - offset) % cols, data[i]);
            }
        }
    }

    /** Buffer variant: reads from the buffer's position without moving it. */
    public static void requireFinite(String what, FloatBuffer data, int rows, int cols) {
        int base = data.position();
        int count = rows * cols;
        for (int i = 0; i < count; i++) {
            float v = data.get(base + i);
            if (!Float.isFinite(v)) {
                throw bad(what, i / cols, i % cols, v);
            }
        }
    }

    public static void requireFinite(String what, double[] data, int rows, int cols) {
        for (int i = 0; i < rows * cols; i++) {
            if (!Double.isFinite(data[i])) {
                throw bad(what, i / cols, i % cols, data[i]);
            }
        }
    }

    /** Index of the first non-finite entry, or -1. */
    public static long firstNonFinite(double[] data) {
        for (int i = 0; i < data.length; i++) {
            if (!Double.isFinite(data[i])) {
                return i;
            }
        }
        return -1;
    }

    private static IllegalArgumentException bad(String what, int row, int col, double value) {
        return new IllegalArgumentException(what + " has non-finite value " + value + " at row " + row
                + ", column " + col);
    }
}
