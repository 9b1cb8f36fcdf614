package dev.curvewatch.curvature;

import java.util.Objects;

/**
 * Immutable checkpoint of a {@link FactorAccumulator}: what a worker stores and restores.
 * The running sum is a full symmetric row-major dim x dim matrix held in the accumulator's
 * storage precision ({@link #sum64()} for FLOAT64, {@link #sum32()} for FLOAT32).
 * {@code stepFirst}/{@code stepLast} are -1 while no step was added.
 */
public final class FactorState {
    private final int dim;
    private final Precision precision;
    private final FactorMode mode;
    private final double decay;
    private final double[] sum64;
    private final float[] sum32;
    private final double weight;
    private final long tokenCount;
    private final long stepFirst;
    private final long stepLast;

    private FactorState(int dim, Precision precision, FactorMode mode, double decay, double[] sum64,
                        float[] sum32, double weight, long tokenCount, long stepFirst, long stepLast) {
        if (dim <= 0) {
            throw new IllegalArgumentException("dim must be positive, got " + dim);
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
        this.dim = dim;
        this.precision = precision;
        this.mode = Objects.requireNonNull(mode);
        this.decay = decay;
        this.sum64 = sum64;
        this.sum32 = sum32;
        this.weight = weight;
        this.tokenCount = tokenCount;
        this.stepFirst = stepFirst;
        this.stepLast = stepLast;
    }

    /** State with a FLOAT64 sum (copied). */
    public static FactorState ofFloat64(int dim, FactorMode mode, double decay, double[] sum, double weight,
                                        long tokenCount, long stepFirst, long stepLast) {
        return new FactorState(dim, Precision.FLOAT64, mode, decay, sum.clone(), null, weight, tokenCount,
                stepFirst, stepLast);
    }

    /** State with a FLOAT32 sum (copied). */
    public static FactorState ofFloat32(int dim, FactorMode mode, double decay, float[] sum, double weight,
                                        long tokenCount, long stepFirst, long stepLast) {
        return new FactorState(dim, Precision.FLOAT32, mode, decay, null, sum.clone(), weight, tokenCount,
                stepFirst, stepLast);
    }

    public int dim() {
        return dim;
    }

    public Precision precision() {
        return precision;
    }

    public FactorMode mode() {
        return mode;
    }

    /** Per-step decay in EMA mode; 1 for CUMULATIVE. */
    public double decay() {
        return decay;
    }

    /** The FLOAT64 running sum (a copy); throws for a FLOAT32 state. */
    public double[] sum64() {
        if (sum64 == null) {
            throw new IllegalStateException("state holds a FLOAT32 sum; use sum32()");
        }
        return sum64.clone();
    }

    /** The FLOAT32 running sum (a copy); throws for a FLOAT64 state. */
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
        if (!(weight > 0)) {
            throw new IllegalStateException("factor has no tokens yet (weight " + weight + ")");
        }
        double inv = 1.0 / weight;
        double[] out = new double[dim * dim];
        for (int i = 0; i < out.length; i++) {
            out[i] = (sum64 != null ? sum64[i] : sum32[i]) * inv;
        }
        return out;
    }

    /** Normaliser: token count for CUMULATIVE, decayed token weight for EMA. */
    public double weight() {
        return weight;
    }

    /** Raw number of tokens ever added, never decayed. */
    public long tokenCount() {
        return tokenCount;
    }

    public long stepFirst() {
        return stepFirst;
    }

    public long stepLast() {
        return stepLast;
    }

    /** Sum without a defensive copy, for the accumulator's restore. */
    double[] sum64View() {
        return sum64;
    }

    float[] sum32View() {
        return sum32;
    }
}
