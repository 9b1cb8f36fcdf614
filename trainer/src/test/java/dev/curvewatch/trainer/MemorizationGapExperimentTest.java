package dev.curvewatch.trainer;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CI size (128-wide, 60 epochs, refresh every 5, noise injected at epoch 30). DESIGN §6: the
 * alert fires within 3 refreshes of the injection and never in the clean control.
 */
class MemorizationGapExperimentTest {

    @Test
    @SuppressWarnings("unchecked")
    void gapAlertFiresAfterInjectionAndNotInCleanControl() {
        MemorizationGapExperiment.Config c = MemorizationGapExperiment.Config.small(1, 0.1);
        Map<String, Object> r = new MemorizationGapExperiment(c, System.out).run();
        Map<String, Object> clean = (Map<String, Object>) r.get("clean");
        Map<String, Object> injected = (Map<String, Object>) r.get("injected");
        assertNull(clean.get("first_alert_epoch"), "alert in the clean control run");
        Integer fired = (Integer) injected.get("first_alert_epoch");
        assertNotNull(fired, "no alert in the injected run");
        int injectAt = (Integer) injected.get("inject_at_epoch");
        assertTrue(fired > injectAt && fired <= injectAt + 3 * c.refreshEvery(),
                "alert at epoch " + fired + ", injection at " + injectAt);
    }
}
