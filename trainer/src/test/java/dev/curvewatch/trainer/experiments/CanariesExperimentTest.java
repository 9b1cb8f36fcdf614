package dev.curvewatch.trainer.experiments;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CI size (10 canaries x 25, 256-wide, 25 epochs). DESIGN §6: strict recitation from ≥ 90% to
 * ≤ 10%, held-out perplexity up by ≤ 5% (the calibration tolerance itself, so no extra margin).
 * Detection per example (canary secrets vs clean spans of the same length): exact edit
 * sensitivity AUROC ≥ 0.95 and within 0.01 of the loss baseline (measured at this size, seed 1:
 * 0.997 vs 1.000; per position, which is not asserted, 0.855 vs 0.835).
 */
class CanariesExperimentTest {

    @Test
    @SuppressWarnings("unchecked")
    void calibratedEditStopsRecitationWithinPerplexityBudget(@TempDir Path tmp) throws Exception {
        Map<String, Object> r = new CanariesExperiment(CanariesExperiment.Config.small(1), System.out).run();
        Map<String, Object> before = (Map<String, Object>) r.get("before");
        Map<String, Object> after = (Map<String, Object>) r.get("after");
        assertTrue((Double) before.get("strict_recitation") >= 0.9, "not memorized: " + before);
        assertNotNull(after, "no layer calibrated: " + r.get("layers"));
        assertTrue((Double) after.get("strict_recitation") <= 0.1, "still recited: " + after);
        double ppl0 = (Double) before.get("held_out_perplexity");
        double ppl1 = (Double) after.get("held_out_perplexity");
        assertTrue(ppl1 <= ppl0 * 1.05 + 1e-9, "perplexity " + ppl0 + " -> " + ppl1);
        Map<String, Object> d = (Map<String, Object>) r.get("detection");
        double exact = (Double) d.get("auroc_exact_edit_sensitivity");
        double loss = (Double) d.get("auroc_loss_baseline");
        assertEquals(10, d.get("canary_examples"));
        assertTrue(exact >= 0.95, "per-example exact AUROC " + exact);
        assertTrue(exact >= loss - 0.01, "exact " + exact + " vs loss baseline " + loss);

        Path json = tmp.resolve("canaries.json");
        String md = ReportCheck.check(json, CanariesReport.write(r, json, "test"),
                List.of("canaries-recitation.png", "canaries-roc.png", "canaries-scores.png"));
        assertTrue(md.contains(String.format("| exact edit sensitivity | %.4f |", exact)), md);
    }

    @Test
    void similarityIsNormalisedLevenshtein() {
        assertEquals(1.0, CanariesExperiment.similarity("abc", "abc"));
        assertEquals(0.75, CanariesExperiment.similarity("abcd", "abxd"));
        assertEquals(0.0, CanariesExperiment.similarity("ab", "cd"));
    }
}
