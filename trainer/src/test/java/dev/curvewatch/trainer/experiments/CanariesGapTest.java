package dev.curvewatch.trainer.experiments;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The memorization gap for the LM at CI size (256-wide, 25 epochs, refresh every 2, canaries
 * injected at epoch 12). DESIGN §6: the alert fires within 3 refreshes of the injection and never
 * in the clean control run of the same length.
 */
class CanariesGapTest {

    @Test
    @SuppressWarnings("unchecked")
    void gapAlertFiresAfterCanariesAppearAndNotInCleanControl() {
        Map<String, Object> r = new CanariesExperiment(CanariesExperiment.Config.small(1), System.out)
                .gap(CanariesExperiment.GAP_REFRESH_SMALL, CanariesExperiment.GAP_BASELINE_REFRESHES);
        Map<String, Object> clean = (Map<String, Object>) r.get("clean");
        Map<String, Object> injected = (Map<String, Object>) r.get("injected");
        assertNull(clean.get("first_alert_epoch"), "alert in the clean control run: " + clean.get("series"));
        Integer fired = (Integer) injected.get("first_alert_epoch");
        assertNotNull(fired, "no alert in the injected run: " + injected.get("series"));
        int injectAt = (Integer) injected.get("inject_at_epoch");
        assertTrue(fired > injectAt && fired <= injectAt + 3 * CanariesExperiment.GAP_REFRESH_SMALL,
                "alert at epoch " + fired + ", injection at " + injectAt);
    }
}
