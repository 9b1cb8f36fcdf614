package dev.curvewatch.contracts;

import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.curvature.FactorState;

/**
 * One layer's committed factor checkpoint as read back from the factors topic: the manifest
 * ("factors ready") and the A and G running sums of exactly its version, checksum verified.
 * {@code FactorAccumulator.restore(a())} continues the accumulation bit-identically.
 */
public record FactorCheckpoint(FactorManifest manifest, FactorState a, FactorState g) {
    public String runId() {
        return manifest.getRunId();
    }

    public String layer() {
        return manifest.getLayer();
    }

    public long version() {
        return manifest.getVersion();
    }

    public long tokenCount() {
        return manifest.getTokenCount();
    }

    /** A = S_A / w as a full row-major d_in x d_in matrix. */
    public double[] meanA() {
        return a.mean();
    }

    /** G = S_G / w as a full row-major d_out x d_out matrix. */
    public double[] meanG() {
        return g.mean();
    }
}
