package dev.curvewatch.workers.internal;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The layers a worker holds in memory, by run/layer key, each with the captures partition that
 * owns it. Written by the poll thread; {@link #count()} and {@link #factorBytes()} are read by
 * the metrics thread.
 */
public final class OwnedLayers {
    private final Map<String, LayerFactors> layers = new HashMap<>();
    private volatile int count;
    private volatile long factorBytes;

    /** The layer's accumulators, or null if this worker does not hold it. */
    public LayerFactors get(String runLayer) {
        return layers.get(runLayer);
    }

    public void put(LayerFactors lf) {
        layers.put(lf.key, lf);
        refresh();
    }

    /** Layers of these captures partitions changed since their last checkpoint. */
    public List<LayerFactors> changedIn(Set<Integer> partitions) {
        List<LayerFactors> out = new ArrayList<>();
        for (LayerFactors lf : layers.values()) {
            if (lf.dirty && partitions.contains(lf.partition)) {
                out.add(lf);
            }
        }
        return out;
    }

    /** Factor bytes a checkpoint of this captures partition would write: its changed layers. */
    public long pendingFactorBytes(int partition) {
        long bytes = 0;
        for (LayerFactors lf : layers.values()) {
            if (lf.dirty && lf.partition == partition) {
                bytes += lf.factorBytes();
            }
        }
        return bytes;
    }

    /** Drops the layers of these captures partitions. */
    public void drop(Set<Integer> partitions) {
        layers.values().removeIf(lf -> partitions.contains(lf.partition));
        refresh();
    }

    /** Number of layers held. */
    public int count() {
        return count;
    }

    /** Bytes of the factor sums held. */
    public long factorBytes() {
        return factorBytes;
    }

    private void refresh() {
        long bytes = 0;
        for (LayerFactors lf : layers.values()) {
            bytes += lf.factorBytes();
        }
        count = layers.size();
        factorBytes = bytes;
    }
}
