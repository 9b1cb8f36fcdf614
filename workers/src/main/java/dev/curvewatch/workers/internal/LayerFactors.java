package dev.curvewatch.workers.internal;

import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.FactorMode;

/**
 * The A and G accumulators of one run/layer owned by this worker, the capture partition that
 * owns it, the last committed checkpoint version and whether anything was added since.
 */
public final class LayerFactors {
    final String key;
    final String runId;
    final String layer;
    final int partition;
    final FactorAccumulator a;
    final FactorAccumulator g;
    long version;
    long captures;
    boolean dirty;

    LayerFactors(String key, String runId, String layer, int partition, FactorAccumulator a, FactorAccumulator g,
                 long version, long captures) {
        this.key = key;
        this.runId = runId;
        this.layer = layer;
        this.partition = partition;
        this.a = a;
        this.g = g;
        this.version = version;
        this.captures = captures;
    }

    static LayerFactors fresh(String key, String runId, String layer, int partition, int dIn, int dOut,
                              Precision precision, FactorMode mode, double decay) {
        FactorAccumulator a = mode == FactorMode.EMA ? FactorAccumulator.ema(dIn, precision, decay)
                : FactorAccumulator.cumulative(dIn, precision);
        FactorAccumulator g = mode == FactorMode.EMA ? FactorAccumulator.ema(dOut, precision, decay)
                : FactorAccumulator.cumulative(dOut, precision);
        return new LayerFactors(key, runId, layer, partition, a, g, 0, 0);
    }

    long factorBytes() {
        return ((long) a.dim() * a.dim() + (long) g.dim() * g.dim()) * a.precision().bytes();
    }
}
