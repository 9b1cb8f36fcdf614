package dev.curvewatch.service.internal;

import org.junit.jupiter.api.Test;

import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class FactorRewindTest {
    @Test
    void aGainSeeksToTheStartOfEachGainedLayersLatestCompleteCheckpoint() {
        FactorRewind r = new FactorRewind();
        // partition 0: run a's v1 (offsets 0-2), run b's v1 (3-5), a's v2 (6-8), a's v3 half way (9)
        r.seen(0, 0, "a/l", false);
        r.seen(0, 1, "a/l", false);
        r.seen(0, 2, "a/l", true);
        r.seen(0, 3, "b/l", false);
        r.seen(0, 4, "b/l", false);
        r.seen(0, 5, "b/l", true);
        r.seen(0, 6, "a/l", false);
        r.seen(0, 7, "a/l", false);
        r.seen(0, 8, "a/l", true);
        r.seen(0, 9, "a/l", false);
        // partition 1: run c's v1 never completed
        r.seen(1, 0, "c/l", false);
        assertEquals(Map.of(0, 6L), r.seeks(k -> k.startsWith("a/")));
        assertEquals(Map.of(0, 3L), r.seeks(k -> !k.startsWith("c/")));
        assertEquals(Map.of(), r.seeks(k -> k.startsWith("c/")), "no complete checkpoint: the next one is read as it comes");
    }

    @Test
    void aManifestWithoutChunksLeavesTheLatestCheckpointWhereItWas() {
        FactorRewind r = new FactorRewind();
        r.seen(0, 0, "a/l", false);
        r.seen(0, 1, "a/l", true);
        r.seen(0, 2, "a/l", false);
        r.seen(0, 3, "a/l", true);
        r.seen(0, 4, "a/l", true); // a refused manifest (no chunks of its own)
        assertEquals(Map.of(0, 2L), r.seeks(k -> true));
        r.seen(1, 7, "a/l", true); // a stray manifest of the same layer on another partition hides nothing
        assertEquals(Map.of(0, 2L), r.seeks(k -> true));
        r.replay(0, 5, Set.of("a"));
        assertTrue(r.inWindow(0, 4));
        assertTrue(r.inWindow(0, 4), "asking does not close the window");
        assertFalse(r.inWindow(0, 5));
    }

    @Test
    void aReplayTakesOnlyTheGainedRunsUpToWhereThePartitionWas() {
        FactorRewind r = new FactorRewind();
        r.replay(0, 10, Set.of("a"));
        assertTrue(r.replaying(0, 6));
        assertTrue(r.replayed(0, "a"));
        assertFalse(r.replayed(0, "b"), "read before the rewind already");
        assertFalse(r.replaying(1, 6), "other partitions are not replayed");
        assertFalse(r.replaying(0, 10), "from where it was on, every record is new");
        assertFalse(r.replaying(0, 7), "the window is closed");
    }
}
