package dev.curvewatch.service.internal;

import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;

/**
 * What a "factors ready" manifest must satisfy before the service keeps it (on arrival, on the
 * ingest thread, before anything is allocated for it): {@link ContractChecks#checkManifest}
 * (ids, sides, decay, weight, counts), at most {@code factors.max.dim} per side, and the sides of
 * the layer as its run registered it, when it did. A manifest that fails is a dead letter with
 * the reason and never replaces the layer's previous one. Pure.
 */
public final class ManifestCheck {
    private ManifestCheck() {
    }

    /**
     * @param registered the layer as the run registered it, or null (run or layer not registered:
     *                   the factors may come first)
     * @param maxDim     largest side accepted
     */
    public static void check(FactorManifest m, LayerInfo registered, int maxDim) {
        ContractChecks.checkManifest(m);
        if (m.getDIn() > maxDim || m.getDOut() > maxDim) {
            throw new InvalidRecordException(RejectReason.OVERSIZED, "manifest v" + m.getVersion() + " of " + m.getRunId() + "/"
                    + m.getLayer() + " announces d_in=" + m.getDIn() + " d_out=" + m.getDOut() + ", more than factors.max.dim=" + maxDim);
        }
        if (registered != null && (registered.getDIn() != m.getDIn() || registered.getDOut() != m.getDOut())) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "manifest v" + m.getVersion() + " of " + m.getRunId() + "/"
                    + m.getLayer() + " has d_in=" + m.getDIn() + " d_out=" + m.getDOut() + ", the run registers the layer as d_in="
                    + registered.getDIn() + " d_out=" + registered.getDOut());
        }
    }
}
