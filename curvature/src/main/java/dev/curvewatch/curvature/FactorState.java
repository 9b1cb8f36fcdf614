package dev.curvewatch.curvature;

import java.util.Objects;

/**
 * Immutable checkpoint of a {@link FactorAccumulator}: what a worker stores and restores.
 * The running sum is a full symmetric row-major dim x dim matrix held in the accumulator's
 * storage precision ({@link #sum64()} for FLOAT64, {@link #sum32()} for FLOAT32); the state keeps
 * its own copy and hands out copies.
 *
 * @param dim side of the factor
 * @param precision storage precision of the sum
 * @param mode how steps are weighted
 * @param decay per-step decay in EMA mode; 1 for CUMULATIVE
 * @param sum64 the FLOAT64 running sum; null in a FLOAT32 state
 * @param sum32 the FLOAT32 running sum; null in a FLOAT64 state
 * @param weight normaliser: token count for CUMULATIVE, decayed token weight for EMA
 * @param tokenCount raw number of tokens ever added, never decayed
 * @param stepFirst first step added, -1 while none was
 * @param stepLast last step added, -1 while none was
 */
public record FactorState(int dim, Precision precision, FactorMode mode, double decay, double[] sum64, float[] sum32,
                          double weight, long tokenCount, long stepFirst, long stepLast) {

    /** Copies the sum, which must be the one of {@code precision}. */
    public FactorState {
        if (dim <= 0) {
            throw new IllegalArgumentException("dim must be positive, got " + dim);
        }
        Objects.requireNonNull(precision);
        if ((sum64 == null) == (sum32 == null) || (sum64 != null) != (precision == Precision.FLOAT64)) {
            throw new IllegalArgumentException("a " + precision + " state holds its sum in "
                    + (precision == Precision.FLOAT64 ? "sum64" : "sum32") + " alone");
        }
        int len = sum64 != null ? sum64.length : sum32.length;
        if (len != (long) dim * dim) {
            throw new IllegalArgumentException("sum of a " + dim + "x" + dim + " factor needs "
                    + ((long) dim * dim) + " entries, got " + len);
        }
        if (!(weight >= 0) || tokenCount < 0) {
            throw new IllegalArgumentException("weight and tokenCount must be >= 0, got " + weight
                    + " and " + tokenCount);
        }
        FactorAccumulator.checkDecay(mode, decay);
        Objects.requireNonNull(mode);
        sum64 = sum64 != null ? sum64.clone() : null;
        sum32 = sum32 != null ? sum32.clone() : null;
    }

    /** State with a FLOAT64 sum (copied). */
    public static FactorState ofFloat64(int dim, FactorMode mode, double decay, double[] sum, double weight,
                                        long tokenCount, long stepFirst, long stepLast) {
        return new FactorState(dim, Precision.FLOAT64, mode, decay, Objects.requireNonNull(sum), null, weight,
                tokenCount, stepFirst, stepLast);
    }

    /** State with a FLOAT32 sum (copied). */
    public static FactorState ofFloat32(int dim, FactorMode mode, double decay, float[] sum, double weight,
                                        long tokenCount, long stepFirst, long stepLast) {
        return new FactorState(dim, Precision.FLOAT32, mode, decay, null, Objects.requireNonNull(sum), weight,
                tokenCount, stepFirst, stepLast);
    }

    /** The FLOAT64 running sum (a copy); throws for a FLOAT32 state. */
    @Override
    public double[] sum64() {
        if (sum64 == null) {
            throw new IllegalStateException("state holds a FLOAT32 sum; use sum32()");
        }
        return sum64.clone();
    }

    /** The FLOAT32 running sum (a copy); throws for a FLOAT64 state. */
    @Override
    public float[] sum32() {
        if (sum32 == null) {
            throw new IllegalStateException("state holds a FLOAT64 sum; use sum64()");
        }
        return sum32.clone();
    }

    /** The running sum widened to double, whatever the storage precision. */
    public double[] sumAsDoubles() {
        if (sum64 != null) {
            return sum64.clone();
        }
        double[] out = new double[sum32.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = sum32[i];
        }
        return out;
    }

    /**
     * The factor S / w as a full row-major dim x dim matrix: the values of
     * {@code FactorAccumulator.restore(this).mean()} without its native copy and second array
     * (a 11008-side factor is 970 MB each).
     */
    public double[] mean() {
        return FactorAccumulator.meanOf(this::sumAsDoubles, weight);
    }

    /** Sum without a defensive copy, for the accumulator's restore. */
    double[] sum64View() {
        return sum64;
    }

    float[] sum32View() {
        return sum32;
    }
}
