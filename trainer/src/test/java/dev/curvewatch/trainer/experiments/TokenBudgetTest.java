package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.CapturePublisher;
import dev.curvewatch.trainer.LayerCapture;

import org.junit.jupiter.api.Test;

import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Per-step token sub-sampling: which rows are kept, and that factors see exactly the budget. */
class TokenBudgetTest {

    @Test
    void sampledRowsAreDistinctSortedAndCoverEveryRowOverManyDraws() {
        Random random = new Random(4);
        int[] seen = new int[100];
        for (int draw = 0; draw < 2000; draw++) {
            int[] keep = WatchedTraining.sampleRows(100, 37, random);
            assertEquals(37, keep.length);
            for (int i = 0; i < keep.length; i++) {
                assertTrue(keep[i] >= 0 && keep[i] < 100);
                assertTrue(i == 0 || keep[i] > keep[i - 1], "not strictly ascending");
                seen[keep[i]]++;
            }
        }
        // uniform without replacement: each row kept 2000 * 0.37 = 740 times in expectation, sd ~21.6
        for (int row = 0; row < 100; row++) {
            assertTrue(Math.abs(seen[row] - 740) < 7 * 21.6, "row " + row + " kept " + seen[row] + " times");
        }
    }

    @Test
    void rowsSelectsActivationAndGradientRowsTogether() {
        float[] a = {0, 1, 10, 11, 20, 21};      // 3 tokens x d_in 2
        float[] g = {0, 1, 2, 100, 101, 102, 200, 201, 202}; // 3 tokens x d_out 3
        LayerCapture kept = new LayerCapture(1, 3, 2, 3, a, g).rows(new int[] {0, 2});
        assertEquals(2, kept.tokens());
        assertArrayEquals(new float[] {0, 1, 20, 21}, kept.a());
        assertArrayEquals(new float[] {0, 1, 2, 200, 201, 202}, kept.g());
    }

    @Test
    @SuppressWarnings("unchecked")
    void offlineRunAccumulatesExactlyTheBudgetPerStep() throws Exception {
        WatchedTraining.Config c = new WatchedTraining.Config("budget", 2, 0.1, 16, 1, 100, 1e-3f, 0, 0, false, 25,
                null, CapturePublisher.Policy.BLOCK, 1 << 20, null, null, null);
        Map<String, Object> r = new WatchedTraining(c, System.out).run();
        Map<String, Object> fc1 = (Map<String, Object>) ((Map<String, Object>) r.get("spectra")).get("fc1");
        assertEquals(20L * 25, ((Number) fc1.get("tokens")).longValue()); // 20 steps of 100 examples, 25 kept
    }

    @Test
    void negativeBudgetIsRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new WatchedTraining.Config(
                "bad", 1, 0.1, 16, 1, 100, 1e-3f, 0, 0, false, -1, null, CapturePublisher.Policy.BLOCK, 1 << 20,
                null, null, null));
        assertTrue(e.getMessage().contains("tokens per step"), e.getMessage());
    }
}
