package dev.curvewatch.trainer.experiments;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CI-size noisy-label run (2000 train examples, 256-wide hidden layers, 80 epochs). Targets from DESIGN §6,
 * with the margins stated per assertion.
 */
class NoisyLabelsExperimentTest {

    @Test
    @SuppressWarnings("unchecked")
    void calibratedEditRestoresTrueLabelsWithoutHurtingTest(@TempDir Path tmp) throws Exception {
        Map<String, Object> r = new NoisyLabelsExperiment(NoisyLabelsExperiment.Config.small(1, 0.1), System.out).run();
        Map<String, Double> before = (Map<String, Double>) r.get("before");
        Map<String, Double> after = (Map<String, Double>) r.get("after");
        assertTrue(before.get("flipped_memorized") >= 0.95, "the model must first memorize the flips: " + before);
        assertTrue(after != null, "calibration chose no layer: " + r.get("layers"));
        // DESIGN §6: >= 90% flipped -> true, <= 5% memorized, test accuracy not lower (0.5 point slack at n=1000)
        assertTrue(after.get("flipped_true") >= 0.90, "flipped->true " + after);
        assertTrue(after.get("flipped_memorized") <= 0.05, "still memorized " + after);
        assertTrue(after.get("test_accuracy") >= before.get("test_accuracy") - 0.005, before + " -> " + after);
        Map<String, Object> d = (Map<String, Object>) r.get("detection");
        double exact = (Double) d.get("auroc_exact_edit_sensitivity");
        double first = (Double) d.get("auroc_first_order");
        double loss = (Double) d.get("auroc_loss_baseline");
        assertTrue(exact >= 0.95, "exact AUROC " + exact);
        assertTrue(first >= 0.90, "first-order AUROC " + first);
        assertTrue(exact >= loss - 0.01, "exact " + exact + " vs loss baseline " + loss);
        assertTrue((Double) d.get("memorization_gap") > 0, "gap " + d.get("memorization_gap"));

        Path json = tmp.resolve("noisy.json");
        String md = ReportCheck.check(json, NoisyLabelsReport.write(r, json, "test"),
                List.of("noisy-before-after.png", "noisy-roc.png", "noisy-scores.png"));
        assertTrue(md.contains(String.format("| exact edit sensitivity | %.4f |", exact)), md);
    }
}
