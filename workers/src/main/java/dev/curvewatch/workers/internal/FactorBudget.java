package dev.curvewatch.workers.internal;

import dev.curvewatch.curvature.Precision;

import java.util.Locale;

/**
 * Which layers a worker takes on: a side at most {@code max.layer.side}, and the factors of all
 * its layers (d_in² + d_out² elements each, in the accumulator's precision) within
 * {@code factors.memory.budget.bytes}. A run may register any side the contract allows (up to
 * 46,340), and a worker allocates a layer's accumulators on its first capture, so without these
 * one small record could make it allocate 12.8 GB (d = 40,000, fp64). A layer refused here is
 * never allocated: its captures are dead letters (OVERSIZED, with this message) and the worker
 * serves the others.
 */
final class FactorBudget {
    private final int maxSide;
    private final long budgetBytes;
    private final Precision precision;

    FactorBudget(int maxSide, long budgetBytes, Precision precision) {
        this.maxSide = maxSide;
        this.budgetBytes = budgetBytes;
        this.precision = precision;
    }

    /** Factor bytes of a d_in x d_out layer at this worker's precision. */
    long bytes(int dIn, int dOut) {
        return ((long) dIn * dIn + (long) dOut * dOut) * precision.bytes();
    }

    /**
     * Why a layer cannot be taken on, or null when it can.
     *
     * @param ownedBytes factor bytes of the layers this worker holds now
     */
    String refusal(String key, int dIn, int dOut, long ownedBytes) {
        if (dIn > maxSide || dOut > maxSide) {
            return String.format(Locale.ROOT, "layer %s has d_in=%d d_out=%d, over this worker's max.layer.side %d", key, dIn, dOut,
                    maxSide);
        }
        long need = bytes(dIn, dOut);
        if (ownedBytes + need > budgetBytes) {
            return String.format(Locale.ROOT, "layer %s (d_in=%d d_out=%d) needs %s of factors; this worker holds %s of its "
                    + "factors.memory.budget.bytes %s", key, dIn, dOut, size(need), size(ownedBytes), size(budgetBytes));
        }
        return null;
    }

    private static String size(long bytes) {
        if (bytes < 1L << 20) {
            return String.format(Locale.ROOT, "%.1f KiB", bytes / 1024.0);
        }
        return bytes < 1L << 30 ? String.format(Locale.ROOT, "%.1f MiB", bytes / 1048576.0)
                : String.format(Locale.ROOT, "%.2f GiB", bytes / 1073741824.0);
    }
}
