package dev.curvewatch.workers.internal;

import dev.curvewatch.curvature.FactorMode;
import dev.curvewatch.curvature.Precision;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;

class OwnedLayersTest {
    private static LayerFactors layer(String name, int partition, int dIn, int dOut) {
        return LayerFactors.fresh("run/" + name, "run", name, partition, dIn, dOut, Precision.FLOAT64, FactorMode.CUMULATIVE, 1.0);
    }

    @Test
    void countsBytesAndChangesPerPartitionAndDropsWholePartitions() {
        OwnedLayers owned = new OwnedLayers();
        LayerFactors a = layer("a", 0, 4, 2);   // (16 + 4) x 8 = 160 bytes
        LayerFactors b = layer("b", 1, 3, 3);   // (9 + 9) x 8 = 144
        LayerFactors c = layer("c", 1, 2, 2);   // (4 + 4) x 8 = 64
        owned.put(a);
        owned.put(b);
        owned.put(c);
        assertEquals(3, owned.count());
        assertEquals(160 + 144 + 64, owned.factorBytes());
        assertSame(b, owned.get("run/b"));

        b.dirty = true;
        a.dirty = true;
        assertEquals(144, owned.pendingFactorBytes(1), "only changed layers are written");
        assertEquals(160, owned.pendingFactorBytes(0));
        assertEquals(List.of(b), owned.changedIn(Set.of(1)));
        assertEquals(0, owned.pendingFactorBytes(2));

        owned.drop(Set.of(1));
        assertNull(owned.get("run/b"));
        assertNull(owned.get("run/c"));
        assertEquals(1, owned.count());
        assertEquals(160, owned.factorBytes(), "bytes follow a drop at once (the budget of the restore after it reads them)");
    }
}
