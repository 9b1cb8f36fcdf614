package dev.curvewatch.curvature;

import java.util.OptionalDouble;

/**
 * The trailing-window baseline of a signal (DESIGN §3: alert thresholds relative to the run's
 * own recent past). A value is anomalous when it exceeds
 * <pre>  threshold = mean + max(k · sd, floor)</pre>
 * of the previous {@code window} admitted values, sd being the sample standard deviation
 * (divisor n − 1, or 1 for a window of one). Until {@code window} values were admitted there is
 * no threshold. A trailing baseline follows the slow rise of the memorization gap while a model
 * fits its training data and alerts on the jump that memorization causes.
 *
 * <p>The rule is the same for every caller; which values enter the window ({@link #admit}) is
 * the caller's, and the two callers choose differently on purpose:
 * <ul>
 *   <li><b>Only normal values</b> (the service's baseline alert rules): a value enters when it
 *       neither exceeded the threshold nor was seen while the rule fired. A live alert keeps
 *       firing and later resolves; were the values of an ongoing memorization admitted, they
 *       would become the new normal and resolve the alert after {@code window} refreshes.</li>
 *   <li><b>Every value</b> (the trainer's gap experiments, {@code MemorizationGapExperiment.alertRule}):
 *       the plain trailing window of the refreshes just before each one. The experiments report
 *       the first value above the threshold, and up to it both choices admit the same values
 *       (nothing exceeded, nothing fired), so it is the service's first FIRING for a rule with
 *       {@code for} = 1. They differ only after it: the experiments record every refresh's
 *       threshold, and keep the plain window so that those stay what their committed results
 *       show.</li>
 * </ul>
 * {@link #threshold(double[], int, int, double, double)} is the rule over a slice of a series.
 * The window is summed oldest first, so a rolling baseline and the slice holding the same values
 * give the same bits. Not thread-safe.
 */
public final class TrailingBaseline {
    private final int window;
    private final double k;
    private final double floor;
    private final double[] ring;
    private int size;
    private int next;

    /**
     * @param window number of previous values the baseline is taken over, ≥ 1
     * @param k      multiple of the standard deviation, ≥ 0
     * @param floor  smallest margin above the mean, ≥ 0 (so a flat window does not alert on noise)
     */
    public TrailingBaseline(int window, double k, double floor) {
        if (window < 1 || !(k >= 0) || !(floor >= 0) || Double.isInfinite(k) || Double.isInfinite(floor)) {
            throw new IllegalArgumentException("need window >= 1 and finite k, floor >= 0; got " + window + ", " + k + ", " + floor);
        }
        this.window = window;
        this.k = k;
        this.floor = floor;
        this.ring = new double[window];
    }

    public int window() {
        return window;
    }

    /** Values in the window now (at most {@link #window()}). */
    public int size() {
        return size;
    }

    /** Whether the window is full, i.e. there is a threshold. */
    public boolean isReady() {
        return size == window;
    }

    /** Adds a value to the window, dropping the oldest when full. */
    public void admit(double value) {
        if (!Double.isFinite(value)) {
            throw new IllegalArgumentException("baseline values must be finite, got " + value);
        }
        ring[next] = value;
        next = (next + 1) % window;
        size = Math.min(window, size + 1);
    }

    /** Mean of the window; NaN when empty. */
    public double mean() {
        if (size == 0) {
            return Double.NaN;
        }
        double s = 0;
        for (int i = 0; i < size; i++) {
            s += oldestFirst(i);
        }
        return s / size;
    }

    /** Sample standard deviation of the window (divisor max(1, n − 1)); NaN when empty. */
    public double sd() {
        if (size == 0) {
            return Double.NaN;
        }
        double m = mean();
        double v = 0;
        for (int i = 0; i < size; i++) {
            double d = oldestFirst(i) - m;
            v += d * d;
        }
        return Math.sqrt(v / Math.max(1, size - 1));
    }

    /** The i-th value of the window, counted from the oldest (floating-point sums depend on the order). */
    private double oldestFirst(int i) {
        int oldest = size < window ? 0 : next;
        return ring[(oldest + i) % window];
    }

    /** mean + max(k · sd, floor) once the window is full. */
    public OptionalDouble threshold() {
        if (!isReady()) {
            return OptionalDouble.empty();
        }
        return OptionalDouble.of(mean() + Math.max(k * sd(), floor));
    }

    /** Whether {@code value} is above the threshold (false while there is none, and for NaN). */
    public boolean exceeds(double value) {
        OptionalDouble t = threshold();
        return t.isPresent() && value > t.getAsDouble();
    }

    /**
     * The rule over {@code values[from, to)} as the window: mean + max(k · sd, floor) with the
     * same sample standard deviation.
     */
    public static double threshold(double[] values, int from, int to, double k, double floor) {
        if (from < 0 || to > values.length || to - from < 1) {
            throw new IllegalArgumentException("window [" + from + ", " + to + ") of " + values.length + " values");
        }
        TrailingBaseline b = new TrailingBaseline(to - from, k, floor);
        for (int i = from; i < to; i++) {
            b.admit(values[i]);
        }
        return b.threshold().getAsDouble();
    }
}
