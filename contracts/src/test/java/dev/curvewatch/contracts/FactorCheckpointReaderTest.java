package dev.curvewatch.contracts;

import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class FactorCheckpointReaderTest {
    private record Rec(byte[] key, byte[] value) {
    }

    private static FactorAccumulator filled(int dim, int captures, long seed) {
        FactorAccumulator acc = FactorAccumulator.cumulative(dim, Precision.FLOAT64);
        for (int i = 0; i < captures; i++) {
            acc.add(i, TestRows.of(seed, "x", i, 5, dim), 5);
        }
        return acc;
    }

    private static List<Rec> checkpoint(String run, String layer, long version, FactorAccumulator a, FactorAccumulator g) {
        List<Rec> out = new ArrayList<>();
        new CheckpointCodec(1024).write(new CheckpointCodec.Provenance(run, layer, version, 1, "w", "t"), a, g,
                (k, v) -> out.add(new Rec(k.getBytes(StandardCharsets.UTF_8), v)));
        return out;
    }

    @Test
    void assemblesTheNewestVersionOnlyWhenItsChunksAreAllIn() {
        FactorAccumulator a1 = filled(20, 2, 1);
        FactorAccumulator g1 = filled(9, 2, 2);
        FactorAccumulator a2 = filled(20, 5, 1);
        FactorAccumulator g2 = filled(9, 5, 2);
        List<Rec> v1 = checkpoint("r", "fc", 1, a1, g1);
        List<Rec> v2 = checkpoint("r", "fc", 2, a2, g2);
        assertTrue(v1.size() > 4, "several chunks per factor: " + v1.size());
        FactorCheckpointReader reader = new FactorCheckpointReader(k -> true);
        for (int i = 0; i < v1.size() - 1; i++) {
            assertTrue(reader.accept(v1.get(i).key(), v1.get(i).value()).isEmpty(), "chunks are not 'factors ready'");
        }
        assertFalse(reader.isComplete("r/fc"), "no manifest yet");
        Rec m1 = v1.get(v1.size() - 1);
        assertEquals("r/fc", reader.accept(m1.key(), m1.value()).orElseThrow());
        assertTrue(reader.isComplete("r/fc"));
        FactorCheckpoint cp1 = reader.assemble("r/fc");
        assertEquals(1, cp1.version());
        assertArrayEquals(a1.sum(), cp1.a().sum64());

        // half of version 2's chunks: version 1 can no longer be assembled, version 2 not yet
        for (int i = 0; i < v2.size() / 2; i++) {
            reader.accept(v2.get(i).key(), v2.get(i).value());
        }
        assertFalse(reader.isComplete("r/fc"));
        assertThrows(CheckpointCorruptException.class, () -> reader.assemble("r/fc"));
        for (int i = v2.size() / 2; i < v2.size(); i++) {
            reader.accept(v2.get(i).key(), v2.get(i).value());
        }
        assertTrue(reader.isComplete("r/fc"));
        FactorCheckpoint cp2 = reader.assemble("r/fc");
        assertEquals(2, cp2.version());
        assertArrayEquals(a2.sum(), cp2.a().sum64());
        assertArrayEquals(g2.sum(), cp2.g().sum64());
        assertEquals(8L * (20 * 20 + 9 * 9), reader.bytesHeld(), "one copy of each factor");

        FactorCheckpointReader other = new FactorCheckpointReader(k -> true);
        v2.subList(0, v2.size() - 1).forEach(r -> other.accept(r.key(), r.value())); // chunks, no manifest yet
        checkpoint("r2", "fc", 1, filled(3, 1, 1), filled(2, 1, 2)).forEach(r -> other.accept(r.key(), r.value()));
        long r2Bytes = 8L * (3 * 3 + 2 * 2);
        other.forgetRun("r");
        assertEquals(r2Bytes, other.bytesHeld(), "chunks of run r are gone even without their manifest; run r2 stays");
        assertTrue(other.manifest("r2/fc").isPresent());

        reader.accept(m1.key(), null); // tombstone of the manifest
        assertTrue(reader.manifest("r/fc").isEmpty());
        reader.forget("r/fc");
        assertEquals(0, reader.bytesHeld());
    }

    @Test
    void unwantedLayersCostNothing() {
        FactorCheckpointReader reader = new FactorCheckpointReader(k -> k.startsWith("keep/"));
        for (Rec r : checkpoint("other", "fc", 1, filled(6, 1, 1), filled(4, 1, 2))) {
            assertTrue(reader.accept(r.key(), r.value()).isEmpty());
        }
        assertEquals(0, reader.bytesHeld());
        assertTrue(reader.layers().isEmpty());
    }

    @Test
    void aRefusedManifestNeverReplacesTheGoodOne() {
        List<Rec> v1 = checkpoint("r", "fc", 1, filled(6, 1, 1), filled(4, 1, 2));
        List<Rec> v2 = checkpoint("r", "fc", 2, filled(6, 2, 1), filled(4, 2, 2));
        FactorCheckpointReader reader = new FactorCheckpointReader(k -> true, m -> {
            if (m.getVersion() == 2) {
                throw new dev.curvewatch.schemas.InvalidRecordException(dev.curvewatch.schemas.RejectReason.OVERSIZED, "refused");
            }
        });
        v1.forEach(r -> reader.accept(r.key(), r.value()));
        Rec m2 = v2.get(v2.size() - 1);
        var e = assertThrows(dev.curvewatch.schemas.InvalidRecordException.class, () -> reader.accept(m2.key(), m2.value()));
        assertEquals(dev.curvewatch.schemas.RejectReason.OVERSIZED, e.reason());
        assertEquals(1, reader.manifest("r/fc").orElseThrow().getVersion(), "the previous manifest stays");
        // a manifest under another layer's key
        var moved = assertThrows(dev.curvewatch.schemas.InvalidRecordException.class,
                () -> reader.accept("r/other/manifest".getBytes(StandardCharsets.UTF_8), v1.get(v1.size() - 1).value()));
        assertEquals(dev.curvewatch.schemas.RejectReason.KEY_MISMATCH, moved.reason());
        assertTrue(reader.manifest("r/other").isEmpty());
    }

    @Test
    void detachedPartsAssembleElsewhereWhileTheReaderGoesOn() throws Exception {
        FactorAccumulator a1 = filled(20, 2, 1);
        List<Rec> v1 = checkpoint("r", "fc", 1, a1, filled(9, 2, 2));
        List<Rec> v2 = checkpoint("r", "fc", 2, filled(20, 5, 1), filled(9, 5, 2));
        FactorCheckpointReader reader = new FactorCheckpointReader(k -> true);
        v1.forEach(r -> reader.accept(r.key(), r.value()));
        FactorCheckpointReader.Parts parts = reader.detach("r/fc").orElseThrow();
        assertTrue(reader.detach("r/none").isEmpty());
        v2.subList(0, v2.size() / 2).forEach(r -> reader.accept(r.key(), r.value())); // v2's chunks replace v1's in the reader
        var pool = java.util.concurrent.Executors.newSingleThreadExecutor();
        try {
            FactorCheckpoint cp = pool.submit(parts::assemble).get();
            assertEquals(1, cp.version());
            assertArrayEquals(a1.sum(), cp.a().sum64());
        } finally {
            pool.shutdownNow();
        }
        assertThrows(CheckpointCorruptException.class, () -> reader.detach("r/fc").orElseThrow().assemble(),
                "parts detached now mix versions");
    }
}
