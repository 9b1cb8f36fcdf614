package dev.curvewatch.contracts;

import dev.curvewatch.avro.FactorChunk;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CheckpointCodecTest {
    record Written(String key, byte[] value) {
    }

    static FactorAccumulator filled(int dim, Precision p, boolean ema, int captures, long seed) {
        FactorAccumulator acc = ema ? FactorAccumulator.ema(dim, p, 0.9) : FactorAccumulator.cumulative(dim, p);
        for (int i = 0; i < captures; i++) {
            acc.add(3 + i, TestRows.of(seed, "x", i, 5, dim), 5);
        }
        return acc;
    }

    List<Written> write(CheckpointCodec codec, FactorAccumulator a, FactorAccumulator g, long version) {
        List<Written> out = new ArrayList<>();
        codec.write(new CheckpointCodec.Provenance("r1", "fc1", version, 7, "w0", "test"), a, g, (k, v) -> out.add(new Written(k, v)));
        return out;
    }

    Map<String, FactorChunk> chunks(CheckpointCodec codec, List<Written> records) {
        Map<String, FactorChunk> m = new HashMap<>();
        for (Written w : records) {
            if (!codec.isManifestKey(w.key())) {
                m.put(w.key(), codec.decodeChunk(w.value()));
            }
        }
        return m;
    }

    @Test
    void roundTripIsBitIdenticalAndContinues() {
        for (Precision p : Precision.values()) {
            for (boolean ema : new boolean[]{false, true}) {
                CheckpointCodec codec = new CheckpointCodec(1024); // several chunks for a 33x33 float64 factor
                FactorAccumulator a = filled(33, p, ema, 4, 1);
                FactorAccumulator g = filled(17, p, ema, 4, 2);
                List<Written> recs = write(codec, a, g, 3);
                Written last = recs.get(recs.size() - 1);
                assertTrue(codec.isManifestKey(last.key()), "manifest is written last");
                assertEquals("r1/fc1/manifest", last.key());
                FactorManifest m = codec.decodeManifest(last.value());
                assertTrue(m.getChunksA() > 1);
                assertEquals(20, m.getTokenCount());
                FactorCheckpoint cp = codec.assemble(m, chunks(codec, recs));
                FactorAccumulator a2 = FactorAccumulator.restore(cp.a());
                assertArrayEquals(a.sum(), a2.sum());
                assertEquals(a.weight(), a2.weight());
                assertEquals(a.stepLast(), a2.stepLast());
                // continuing after the restore gives exactly what continuing the original gives
                float[] more = TestRows.of(9, "y", 0, 5, 33);
                a.add(20, more, 5);
                a2.add(20, more, 5);
                assertArrayEquals(a.sum(), a2.sum());
                assertEquals(a.weight(), a2.weight());
            }
        }
    }

    @Test
    void refusesMissingStaleOrAlteredChunks() {
        CheckpointCodec codec = new CheckpointCodec(1024);
        FactorAccumulator a = filled(20, Precision.FLOAT64, false, 2, 1);
        FactorAccumulator g = filled(10, Precision.FLOAT64, false, 2, 2);
        List<Written> v1 = write(codec, a, g, 1);
        a.add(9, TestRows.of(3, "z", 0, 5, 20), 5);
        g.add(9, TestRows.of(3, "z", 1, 5, 10), 5);
        List<Written> v2 = write(codec, a, g, 2);
        FactorManifest m2 = codec.decodeManifest(v2.get(v2.size() - 1).value());

        Map<String, FactorChunk> missing = chunks(codec, v2);
        missing.remove("r1/fc1/A/1");
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(m2, missing));

        Map<String, FactorChunk> stale = chunks(codec, v2);
        stale.put("r1/fc1/G/0", chunks(codec, v1).get("r1/fc1/G/0"));
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(m2, stale));

        Map<String, FactorChunk> altered = chunks(codec, v2);
        FactorChunk c = altered.get("r1/fc1/A/0");
        ByteBuffer data = c.getData().getData();
        data.put(0, (byte) (data.get(0) ^ 1));
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(m2, altered));
    }

    @Test
    void manifestSizesAndValuesAreCheckedBeforeAnythingIsAllocated() {
        CheckpointCodec codec = new CheckpointCodec(1024);
        List<Written> recs = write(codec, filled(20, Precision.FLOAT64, false, 2, 1), filled(10, Precision.FLOAT64, false, 2, 2), 1);
        FactorManifest m = codec.decodeManifest(recs.get(recs.size() - 1).value());
        Map<String, FactorChunk> chunks = chunks(codec, recs);
        // the old assembly allocated new double[(int) (d * d)] from these before looking at a chunk:
        // NegativeArraySizeException, OutOfMemoryError or a 16 GiB array
        for (int side : new int[]{46341, 65536, Integer.MAX_VALUE, 0, -3, 40000}) {
            FactorManifest huge = FactorManifest.newBuilder(m).setDIn(side).build();
            CheckpointCorruptException e = assertThrows(CheckpointCorruptException.class, () -> codec.assemble(huge, chunks), "d_in " + side);
            assertTrue(e.getMessage().contains("d_in") || e.getMessage().contains("chunk"), e.getMessage());
        }
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(FactorManifest.newBuilder(m).setChunksA(Integer.MAX_VALUE).build(), chunks));
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(FactorManifest.newBuilder(m).setChunksG(0).build(), chunks));
        // values the factor state refuses are a corrupt checkpoint, not an IllegalArgumentException
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(FactorManifest.newBuilder(m).setEmaDecay(0.5).build(), chunks));
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(FactorManifest.newBuilder(m).setWeight(-1).build(), chunks));
        assertThrows(CheckpointCorruptException.class, () -> codec.assemble(FactorManifest.newBuilder(m)
                .setMode(dev.curvewatch.avro.FactorMode.EMA).setEmaDecay(7).build(), chunks));
        assertEquals(1, codec.assemble(m, chunks).version(), "the real manifest still assembles");
    }

    @Test
    void runLayerOfKeys() {
        assertEquals("r1/fc1", CheckpointCodec.runLayerOf("r1/fc1/manifest"));
        assertEquals("r1/fc1", CheckpointCodec.runLayerOf("r1/fc1/A/12"));
        assertEquals("r-2/model.layers.3:up", CheckpointCodec.runLayerOf("r-2/model.layers.3:up/G/0"));
    }
}
