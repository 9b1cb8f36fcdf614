package dev.curvewatch.curvature;

/** How a {@link FactorAccumulator} weighs old tokens against new ones (DESIGN §2). */
public enum FactorMode {
    /** Plain sum over the whole run: the factor is the mean over every token seen. */
    CUMULATIVE,
    /** Exponential moving average: sum and weight shrink by {@code decay} per step advanced. */
    EMA
}
