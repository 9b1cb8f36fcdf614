package dev.curvewatch.trainer;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CI size (10 canaries x 25, 256-wide, 25 epochs). DESIGN §6: strict recitation from ≥ 90% to
 * ≤ 10%, held-out perplexity up by ≤ 5% (the calibration tolerance itself, so no extra margin).
 */
class CanariesExperimentTest {

    @Test
    @SuppressWarnings("unchecked")
    void calibratedEditStopsRecitationWithinPerplexityBudget() {
        Map<String, Object> r = new CanariesExperiment(CanariesExperiment.Config.small(1), System.out).run();
        Map<String, Object> before = (Map<String, Object>) r.get("before");
        Map<String, Object> after = (Map<String, Object>) r.get("after");
        assertTrue((Double) before.get("strict_recitation") >= 0.9, "not memorized: " + before);
        assertNotNull(after, "no layer calibrated: " + r.get("layers"));
        assertTrue((Double) after.get("strict_recitation") <= 0.1, "still recited: " + after);
        double ppl0 = (Double) before.get("held_out_perplexity");
        double ppl1 = (Double) after.get("held_out_perplexity");
        assertTrue(ppl1 <= ppl0 * 1.05 + 1e-9, "perplexity " + ppl0 + " -> " + ppl1);
    }

    @Test
    void similarityIsNormalisedLevenshtein() {
        assertEquals(1.0, CanariesExperiment.similarity("abc", "abc"));
        assertEquals(0.75, CanariesExperiment.similarity("abcd", "abxd"));
        assertEquals(0.0, CanariesExperiment.similarity("ab", "cd"));
    }
}
