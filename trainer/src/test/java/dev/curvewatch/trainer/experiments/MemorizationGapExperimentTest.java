package dev.curvewatch.trainer.experiments;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CI size (128-wide, 60 epochs, refresh every 5, noise injected at epoch 30). DESIGN §6: the
 * alert fires within 3 refreshes of the injection and never in the clean control. The alert rule
 * itself against the plain trailing window written out.
 */
class MemorizationGapExperimentTest {

    @Test
    @SuppressWarnings("unchecked")
    void gapAlertFiresAfterInjectionAndNotInCleanControl(@TempDir Path tmp) throws Exception {
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

        Path json = tmp.resolve("gap.json");
        String md = ReportCheck.check(json, GapReport.write(r, json, "test"), List.of("gap.png"));
        assertTrue(md.contains("first alert at epoch " + fired), md);
    }

    @Test
    void alertRuleIsThePlainTrailingWindowBitForBit() {
        Random r = new Random(11);
        for (int window : new int[] {1, 3, 4, 6}) {
            List<Map<String, Object>> series = new ArrayList<>();
            double[] gap = new double[30];
            for (int k = 0; k < gap.length; k++) {
                gap[k] = 0.01 * r.nextGaussian() + 0.002 * k + (k >= 20 ? 0.4 + 0.2 * r.nextGaussian() : 0);
                Map<String, Object> point = new LinkedHashMap<>();
                point.put("epoch", 5 * (k + 1));
                point.put("gap", gap[k]);
                series.add(point);
            }
            Map<String, Object> got = MemorizationGapExperiment.alertRule(series, window);
            Integer first = null;
            double threshold = Double.NaN;
            for (int k = 0; k < gap.length; k++) {
                if (k < window) {
                    assertNull(series.get(k).get("threshold"));
                    continue;
                }
                // every previous refresh in the window, those above their threshold included
                double mean = 0;
                for (int i = k - window; i < k; i++) {
                    mean += gap[i];
                }
                mean /= window;
                double var = 0;
                for (int i = k - window; i < k; i++) {
                    var += (gap[i] - mean) * (gap[i] - mean);
                }
                double t = mean + Math.max(5 * Math.sqrt(var / Math.max(1, window - 1)), 0.05);
                assertEquals(t, (Double) series.get(k).get("threshold"), "window " + window + ", refresh " + k);
                if (first == null) {
                    threshold = t;
                    if (gap[k] > t) {
                        first = 5 * (k + 1);
                    }
                }
            }
            assertNotNull(first, "the jump at refresh 20 alerts");
            assertEquals(first, got.get("first_alert_epoch"));
            assertEquals(threshold, (Double) got.get("threshold"));
        }
    }
}
