package dev.curvewatch.service;

import dev.curvewatch.avro.Severity;
import org.junit.jupiter.api.Test;

import java.io.StringReader;
import java.util.List;
import java.util.Properties;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AlertRulesTest {
    static Properties props(String text) throws Exception {
        Properties p = new Properties();
        p.load(new StringReader(text));
        return p;
    }

    @Test
    void shippedDefaultsAreTheContractsRules() {
        List<AlertRule> rules = AlertRules.defaults();
        assertEquals(List.of("gap-high", "gap-jump", "gap-regrowth"), rules.stream().map(AlertRule::name).toList());
        AlertRule regrowth = rules.get(2);
        assertEquals(true, regrowth.afterSnapshot(), "only an edited model is watched for regrowth");
        assertEquals(false, rules.get(0).afterSnapshot() || rules.get(1).afterSnapshot());
        assertEquals(1, regrowth.window());
        assertEquals(0.01, regrowth.floor());
        assertEquals(Severity.WARNING, regrowth.severity());
        AlertRule jump = rules.get(1);
        assertEquals(AlertRule.Type.BASELINE, jump.type());
        assertEquals("memorization_gap", jump.signal());
        assertEquals(4, jump.window());
        assertEquals(5, jump.k());
        assertEquals(0.05, jump.floor());
        assertEquals(Severity.CRITICAL, jump.severity());
        AlertRule high = rules.get(0);
        assertEquals(AlertRule.Type.THRESHOLD, high.type());
        assertEquals(0.25, high.threshold());
        assertEquals(Severity.WARNING, high.severity());
        assertEquals(1, high.holdFor());
    }

    @Test
    void everyKeyParses() throws Exception {
        List<AlertRule> rules = AlertRules.parse(props("""
                alert.rho-drop.signal=calibrated_rho
                alert.rho-drop.type=rate
                alert.rho-drop.threshold=-0.1
                alert.rho-drop.direction=below
                alert.rho-drop.window=3
                alert.rho-drop.for=2
                alert.rho-drop.severity=info
                alert.rho-drop.runs=run-a, run-b
                alert.rho-drop.layers=fc2
                """));
        AlertRule r = rules.get(0);
        assertEquals(AlertRule.Type.RATE, r.type());
        assertTrue(r.below());
        assertEquals(3, r.window());
        assertEquals(2, r.holdFor());
        assertEquals(Severity.INFO, r.severity());
        assertEquals(Set.of("run-a", "run-b"), r.runs());
        assertTrue(r.applies("calibrated_rho", "run-a", "fc2"));
        assertTrue(!r.applies("calibrated_rho", "run-c", "fc2") && !r.applies("calibrated_rho", "run-a", "fc1")
                && !r.applies("memorization_gap", "run-a", "fc2"));
    }

    @Test
    void mistakesAreRefusedWithTheirName() throws Exception {
        String[][] bad = {
                {"alert.x.signal=s\nalert.x.type=threshold\nalert.x.treshold=1\n", "treshold"},
                {"alert.x.signal=s\nalert.x.type=threshold\n", "threshold is required"},
                {"alert.x.signal=s\nalert.x.type=sometimes\nalert.x.threshold=1\n", "type must be"},
                {"alert.x.type=threshold\nalert.x.threshold=1\n", "signal is required"},
                {"alert.x.signal=s\nalert.x.type=threshold\nalert.x.threshold=high\n", "threshold must be a finite number"},
                {"alert.x.signal=s\nalert.x.type=baseline\nalert.x.window=0\n", "window"},
                {"alert.x.signal=s\nalert.x.type=baseline\nalert.x.direction=below\n", "rises only"},
                {"alert.x.signal=s\nalert.x.type=threshold\nalert.x.threshold=1\nalert.x.severity=LOUD\n", "severity"},
                {"alert.bad/name.signal=s\nalert.bad/name.type=threshold\nalert.bad/name.threshold=1\n", "alert rule name"},
                {"rule.x.signal=s\n", "unknown alert rule key"},
        };
        for (String[] b : bad) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AlertRules.parse(props(b[0])), b[0]);
            assertTrue(e.getMessage().contains(b[1]), b[1] + " not in: " + e.getMessage());
        }
    }
}
