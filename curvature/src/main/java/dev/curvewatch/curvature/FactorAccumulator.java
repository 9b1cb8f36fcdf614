package dev.curvewatch.curvature;

import dev.curvewatch.curvature.internal.FiniteScan;
import dev.curvewatch.curvature.spi.BlasBackend;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.util.function.Supplier;

/**
 * Running sum S = Σ x xᵀ of one K-FAC factor (A from layer inputs, G from output gradients) with
 * its normaliser, so that {@link #mean()} = S / w and two workers' sums merge exactly (DESIGN §2).
 *
 * <p>The O(tokens·dim²) update goes through BLAS {@code syrk} into the upper triangle of an
 * off-heap sum; the lower triangle is filled only when the factor is read. In EMA mode S and w
 * are multiplied by {@code decay^(step - stepLast)} before a later step is added (folded into
 * syrk's beta). Not thread-safe: one accumulator per layer and factor, owned by one worker.
 */
public final class FactorAccumulator {
    private final int dim;
    private final Precision precision;
    private final FactorMode mode;
    private final double decay;
    private final BlasBackend blas;
    /** Upper triangle valid; FLOAT32 storage. */
    private final FloatBuffer sum32;
    /** Upper triangle valid; FLOAT64 storage. */
    private final DoubleBuffer sum64;
    private double weight;
    private long tokenCount;
    private long stepFirst = -1;
    private long stepLast = -1;
    /** Reused native copy of non-direct input, so a batch is copied at most once and nothing is allocated per call. */
    private FloatBuffer scratch32;
    private DoubleBuffer scratch64;

    private FactorAccumulator(int dim, Precision precision, FactorMode mode, double decay, BlasBackend blas) {
        if (dim <= 0) {
            throw new IllegalArgumentException("dim must be positive, got " + dim);
        }
        checkDecay(mode, decay);
        this.dim = dim;
        this.precision = precision;
        this.mode = mode;
        this.decay = decay;
        this.blas = blas;
        ByteBuffer raw = ByteBuffer.allocateDirect(Math.multiplyExact(Math.multiplyExact(dim, dim), precision.bytes()))
                .order(ByteOrder.nativeOrder());
        this.sum32 = precision == Precision.FLOAT32 ? raw.asFloatBuffer() : null;
        this.sum64 = precision == Precision.FLOAT64 ? raw.asDoubleBuffer() : null;
    }

    /** Cumulative mean over every token added, on the best available {@link BlasBackend}. */
    public static FactorAccumulator cumulative(int dim, Precision precision) {
        return new FactorAccumulator(dim, precision, FactorMode.CUMULATIVE, 1.0, BlasBackends.best());
    }

    /** Exponential moving average with the given per-step decay in (0, 1]. */
    public static FactorAccumulator ema(int dim, Precision precision, double decay) {
        return new FactorAccumulator(dim, precision, FactorMode.EMA, decay, BlasBackends.best());
    }

    /** Accumulator running its kernels on a given backend (used by backend contract tests). */
    public static FactorAccumulator create(int dim, Precision precision, FactorMode mode, double decay,
                                           BlasBackend blas) {
        return new FactorAccumulator(dim, precision, mode, decay, blas);
    }

    /** Rebuilds an accumulator from a checkpoint; later adds give bit-identical results. */
    public static FactorAccumulator restore(FactorState state) {
        return restore(state, BlasBackends.best());
    }

    /** {@link #restore(FactorState)} on a given backend. */
    public static FactorAccumulator restore(FactorState state, BlasBackend blas) {
        FactorAccumulator acc = new FactorAccumulator(state.dim(), state.precision(), state.mode(),
                state.decay(), blas);
        if (state.precision() == Precision.FLOAT32) {
            acc.sum32.put(0, state.sum32View());
        } else {
            acc.sum64.put(0, state.sum64View());
        }
        acc.weight = state.weight();
        acc.tokenCount = state.tokenCount();
        acc.stepFirst = state.stepFirst();
        acc.stepLast = state.stepLast();
        return acc;
    }

    static void checkDecay(FactorMode mode, double decay) {
        if (mode == FactorMode.CUMULATIVE ? decay != 1.0 : !(decay > 0 && decay <= 1)) {
            throw new IllegalArgumentException("decay must be 1 for CUMULATIVE and in (0, 1] for EMA, got "
                    + decay + " for " + mode);
        }
    }

    /**
     * Adds Σ x xᵀ over {@code tokens} rows of length {@link #dim()}, read from the buffer's
     * position (which is left unchanged). A direct buffer in native order is handed to BLAS
     * without a copy; anything else is copied once.
     *
     * @param step training step of these rows, &ge; 0
     * @throws IllegalArgumentException on a shape mismatch or a NaN/Inf entry (state unchanged)
     */
    public void add(long step, FloatBuffer rows, int tokens) {
        checkShape(step, rows.remaining(), tokens);
        FiniteScan.requireFinite("factor input", rows, tokens, dim);
        FloatBuffer x = rows.slice();
        if (precision == Precision.FLOAT32 && !(x.isDirect() && x.order() == ByteOrder.nativeOrder())) {
            FloatBuffer copy = directFloats(tokens * dim);
            copy.put(0, x, 0, tokens * dim);
            x = copy;
        }
        accumulate(step, x, tokens);
    }

    /** Array variant of {@link #add(long, FloatBuffer, int)}: {@code rows.length} must be tokens·dim. */
    public void add(long step, float[] rows, int tokens) {
        checkShape(step, rows.length, tokens);
        FiniteScan.requireFinite("factor input", rows, 0, tokens, dim);
        FloatBuffer x;
        if (precision == Precision.FLOAT32) {
            x = directFloats(tokens * dim);
            x.put(0, rows);
        } else {
            x = FloatBuffer.wrap(rows);
        }
        accumulate(step, x, tokens);
    }

    private void checkShape(long step, int entries, int tokens) {
        if (step < 0) {
            throw new IllegalArgumentException("step must be >= 0, got " + step);
        }
        if (tokens < 0 || (long) tokens * dim != entries) {
            throw new IllegalArgumentException("expected " + tokens + " rows of " + dim + " = "
                    + ((long) tokens * dim) + " values, got " + entries);
        }
    }

    private void accumulate(long step, FloatBuffer x, int tokens) {
        double scale = decayFactor(step);
        if (tokens == 0) {
            scaleSum(scale);
        } else if (precision == Precision.FLOAT32) {
            blas.syrkUpper(dim, tokens, 1.0f, x, (float) scale, sum32);
        } else {
            DoubleBuffer wide = directDoubles(tokens * dim);
            for (int i = 0; i < tokens * dim; i++) {
                wide.put(i, x.get(i));
            }
            blas.syrkUpper(dim, tokens, 1.0, wide, scale, sum64);
        }
        weight = weight * scale + tokens;
        tokenCount += tokens;
        if (stepFirst < 0 || step < stepFirst) {
            stepFirst = step;
        }
        stepLast = Math.max(stepLast, step);
    }

    /** decay^(steps advanced); steps at or before stepLast are not decayed. */
    private double decayFactor(long step) {
        if (mode == FactorMode.CUMULATIVE || stepLast < 0 || step <= stepLast) {
            return 1.0;
        }
        return Math.pow(decay, step - stepLast);
    }

    private void scaleSum(double scale) {
        if (scale == 1.0) {
            return;
        }
        for (int i = 0; i < dim * dim; i++) {
            if (precision == Precision.FLOAT32) {
                sum32.put(i, (float) (sum32.get(i) * scale));
            } else {
                sum64.put(i, sum64.get(i) * scale);
            }
        }
    }

    /**
     * Adds another accumulator's sums: exact for CUMULATIVE; in EMA mode the one with the earlier
     * {@code stepLast} is first decayed to the later one. Dimension, precision, mode and decay
     * must match.
     */
    public void merge(FactorAccumulator other) {
        if (other.dim != dim || other.precision != precision || other.mode != mode || other.decay != decay) {
            throw new IllegalArgumentException("cannot merge " + describe() + " with " + other.describe());
        }
        long last = Math.max(stepLast, other.stepLast);
        double mine = mode == FactorMode.EMA && stepLast >= 0 ? Math.pow(decay, last - stepLast) : 1.0;
        double theirs = mode == FactorMode.EMA && other.stepLast >= 0 ? Math.pow(decay, last - other.stepLast) : 1.0;
        for (int i = 0; i < dim; i++) {
            for (int j = i; j < dim; j++) {
                int k = i * dim + j;
                if (precision == Precision.FLOAT32) {
                    sum32.put(k, (float) (sum32.get(k) * mine + other.sum32.get(k) * theirs));
                } else {
                    sum64.put(k, sum64.get(k) * mine + other.sum64.get(k) * theirs);
                }
            }
        }
        weight = weight * mine + other.weight * theirs;
        tokenCount += other.tokenCount;
        if (other.stepFirst >= 0 && (stepFirst < 0 || other.stepFirst < stepFirst)) {
            stepFirst = other.stepFirst;
        }
        stepLast = last;
    }

    /** The factor S / w as a full symmetric row-major dim x dim matrix. */
    public double[] mean() {
        return meanOf(this::sum, weight);
    }

    /**
     * S / w, divided in place in a fresh copy of the sum; the copy is asked for only once the
     * weight is known to be positive (a factor with no tokens has no mean).
     */
    static double[] meanOf(Supplier<double[]> freshSum, double weight) {
        if (!(weight > 0)) {
            throw new IllegalStateException("factor has no tokens yet (weight " + weight + ")");
        }
        double[] out = freshSum.get();
        double inv = 1.0 / weight;
        for (int i = 0; i < out.length; i++) {
            out[i] *= inv;
        }
        return out;
    }

    /** The running sum S as a full symmetric row-major dim x dim matrix. */
    public double[] sum() {
        double[] out = new double[dim * dim];
        for (int i = 0; i < dim; i++) {
            for (int j = i; j < dim; j++) {
                double v = precision == Precision.FLOAT32 ? sum32.get(i * dim + j) : sum64.get(i * dim + j);
                out[i * dim + j] = v;
                out[j * dim + i] = v;
            }
        }
        return out;
    }

    /** Immutable checkpoint; {@code restore(snapshot())} continues bit-identically. */
    public FactorState snapshot() {
        if (precision == Precision.FLOAT32) {
            float[] s = new float[dim * dim];
            for (int i = 0; i < dim; i++) {
                for (int j = i; j < dim; j++) {
                    float v = sum32.get(i * dim + j);
                    s[i * dim + j] = v;
                    s[j * dim + i] = v;
                }
            }
            return FactorState.ofFloat32(dim, mode, decay, s, weight, tokenCount, stepFirst, stepLast);
        }
        return FactorState.ofFloat64(dim, mode, decay, sum(), weight, tokenCount, stepFirst, stepLast);
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

    public double decay() {
        return decay;
    }

    /** Normaliser of {@link #mean()}: tokens for CUMULATIVE, decayed token weight for EMA. */
    public double weight() {
        return weight;
    }

    /** Raw number of tokens added, never decayed. */
    public long tokenCount() {
        return tokenCount;
    }

    /** First step added, -1 if none. */
    public long stepFirst() {
        return stepFirst;
    }

    /** Last step added, -1 if none. */
    public long stepLast() {
        return stepLast;
    }

    private String describe() {
        return "FactorAccumulator[dim=" + dim + ", " + precision + ", " + mode + ", decay=" + decay + "]";
    }

    private FloatBuffer directFloats(int count) {
        if (scratch32 == null || scratch32.capacity() < count) {
            scratch32 = ByteBuffer.allocateDirect(count * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
        }
        return scratch32;
    }

    private DoubleBuffer directDoubles(int count) {
        if (scratch64 == null || scratch64.capacity() < count) {
            scratch64 = ByteBuffer.allocateDirect(count * 8).order(ByteOrder.nativeOrder()).asDoubleBuffer();
        }
        return scratch64;
    }
}
