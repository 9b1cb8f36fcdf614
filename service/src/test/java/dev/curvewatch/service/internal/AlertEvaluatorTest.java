package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.TrailingBaseline;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.service.AlertRule;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AlertEvaluatorTest {
    static AlertRule threshold(String name, double t, int holdFor) {
        return new AlertRule(name, "memorization_gap", AlertRule.Type.THRESHOLD, t, false, 1, 5, 0.05, holdFor, Severity.WARNING, Set.of(), Set.of());
    }

    static Signal gap(String layer, long step, double v) {
        return Signal.newBuilder().setRunId("run-1").setLayer(layer).setStep(step).setName("memorization_gap").setValue(v)
                .setFactorVersion(step).setTimestampMs(step).build();
    }

    /** Feeds the values as steps 1..n; returns per step the status published (null: none). */
    static List<AlertStatus> feed(AlertEvaluator e, List<Alert> sink, double... values) {
        List<AlertStatus> out = new ArrayList<>();
        for (int i = 0; i < values.length; i++) {
            List<Alert> a = e.evaluate(gap("fc2", i + 1, values[i]), AlertEvaluator.Context.NONE, 1000L * (i + 1), true);
            assertTrue(a.size() <= 1, "one rule, one alert at most");
            out.add(a.isEmpty() ? null : a.get(0).getStatus());
            sink.addAll(a);
        }
        return out;
    }

    private static final AlertStatus F = AlertStatus.FIRING;
    private static final AlertStatus R = AlertStatus.RESOLVED;

    @Test
    void thresholdFiresRepeatsAndResolvesOnce() {
        List<Alert> alerts = new ArrayList<>();
        List<AlertStatus> got = feed(new AlertEvaluator(List.of(threshold("gap-high", 0.25, 1))), alerts, 0.1, 0.3, 0.4, 0.2, 0.1, 0.3);
        assertEquals(Arrays.asList(null, F, F, R, null, F), got);
        assertEquals(2000, alerts.get(0).getFirstSeenMs());
        assertEquals(2000, alerts.get(1).getFirstSeenMs(), "a repeat keeps first_seen");
        assertEquals(3000, alerts.get(1).getLastSeenMs());
        assertEquals(6000, alerts.get(3).getFirstSeenMs(), "a new episode starts a new first_seen");
        assertEquals(0.4, alerts.get(1).getValue());
        assertEquals(0.25, alerts.get(1).getThreshold());
        assertEquals(3, alerts.get(1).getStep());
        for (Alert a : alerts) {
            ContractChecks.checkAlert(a);
            assertEquals(Fingerprints.alert("run-1", "fc2", "gap-high"), a.getFingerprint());
        }
        assertNotEquals(alerts.get(0).getId(), alerts.get(1).getId(), "each event has its own id");
    }

    @Test
    void forHoldsBothWays() {
        List<Alert> alerts = new ArrayList<>();
        List<AlertStatus> got = feed(new AlertEvaluator(List.of(threshold("gap-high", 0.25, 2))), alerts,
                0.3, 0.1, 0.3, 0.3, 0.1, 0.3, 0.1, 0.1, 0.1);
        // one match is not enough; two in a row fire; one miss is held; two misses resolve, once
        assertEquals(Arrays.asList(null, null, null, F, F, F, F, R, null), got);
        assertEquals(1, alerts.stream().filter(a -> a.getStatus() == R).count());
    }

    @Test
    void baselineWindowLeavesOutValuesSeenWhileFiring() {
        AlertRule rule = new AlertRule("gap-jump", "memorization_gap", AlertRule.Type.BASELINE, Double.NaN, false, 4, 5, 0.05, 1,
                Severity.CRITICAL, Set.of(), Set.of());
        AlertEvaluator e = new AlertEvaluator(List.of(rule));
        List<Alert> alerts = new ArrayList<>();
        double[] v = {0.01, 0.02, 0.015, 0.012, 0.5, 0.6, 0.02, 0.03, 0.2};
        List<AlertStatus> got = feed(e, alerts, v);
        assertEquals(Arrays.asList(null, null, null, null, F, F, R, null, F), got);
        double t1 = TrailingBaseline.threshold(v, 0, 4, 5, 0.05);
        assertEquals(t1, alerts.get(0).getThreshold(), 1e-15);
        assertEquals(t1, alerts.get(1).getThreshold(), 1e-15, "0.5 did not enter the window");
        // after the resolve, the window is 0.02, 0.015, 0.012 (kept) + 0.02 (the resolving value), then 0.03
        double[] window = {0.015, 0.012, 0.02, 0.03};
        assertEquals(TrailingBaseline.threshold(window, 0, 4, 5, 0.05), alerts.get(3).getThreshold(), 1e-15);
        assertEquals(Severity.CRITICAL, alerts.get(0).getSeverity());
        assertEquals("4", alerts.get(0).getDetails().get("window"));
        assertTrue(alerts.get(0).getDetails().containsKey("window_mean"));
    }

    @Test
    void rateComparesWithTheValueWindowEvaluationsAgo() {
        AlertRule rule = new AlertRule("gap-rise", "memorization_gap", AlertRule.Type.RATE, 0.1, false, 2, 0, 0, 1, Severity.INFO,
                Set.of(), Set.of());
        List<Alert> alerts = new ArrayList<>();
        List<AlertStatus> got = feed(new AlertEvaluator(List.of(rule)), alerts, 0, 0.05, 0.2, 0.25, 0.26, 0.27);
        assertEquals(Arrays.asList(null, null, F, F, R, null), got);
        assertEquals(0.2, alerts.get(0).getValue(), 1e-12, "the value of a rate alert is the change");
        assertEquals(0.2, alerts.get(1).getValue(), 1e-12);
        AlertRule drop = new AlertRule("rho-drop", "memorization_gap", AlertRule.Type.RATE, -0.05, true, 1, 0, 0, 1, Severity.INFO,
                Set.of(), Set.of());
        assertEquals(Arrays.asList(null, null, F, R), feed(new AlertEvaluator(List.of(drop)), new ArrayList<>(), 0.9, 0.89, 0.7, 0.7));
    }

    @Test
    void layersAndRunsHaveTheirOwnStateAndFilters() {
        AlertRule onlyFc1 = new AlertRule("fc1-only", "memorization_gap", AlertRule.Type.THRESHOLD, 0, false, 1, 0, 0, 1,
                Severity.WARNING, Set.of(), Set.of("fc1"));
        AlertEvaluator e = new AlertEvaluator(List.of(threshold("gap-high", 0.25, 1), onlyFc1));
        List<Alert> a = e.evaluate(gap("fc1", 1, 0.5), AlertEvaluator.Context.NONE, 1, true);
        assertEquals(2, a.size());
        List<Alert> b = e.evaluate(gap("fc2", 1, 0.5), AlertEvaluator.Context.NONE, 1, true);
        assertEquals(1, b.size(), "the fc1-only rule does not watch fc2");
        assertNotEquals(a.get(0).getFingerprint(), b.get(0).getFingerprint());
        assertEquals(3, e.firingCount(), "gap-high on fc1 and fc2, fc1-only on fc1");
        Signal other = Signal.newBuilder(gap("fc1", 2, 0.5)).setName("effective_rank_g").build();
        assertTrue(e.evaluate(other, AlertEvaluator.Context.NONE, 2, true).isEmpty(), "rules watch their signal only");
        assertTrue(e.evaluate(gap("fc1", 3, Double.NaN), AlertEvaluator.Context.NONE, 3, true).isEmpty(), "NaN is not evaluated");
    }

    @Test
    void replayRebuildsStateWithoutPublishing() {
        AlertEvaluator e = new AlertEvaluator(List.of(threshold("gap-high", 0.25, 1)));
        assertTrue(e.evaluate(gap("fc2", 1, 0.5), AlertEvaluator.Context.NONE, 10, false).isEmpty());
        List<Alert> next = e.evaluate(gap("fc2", 2, 0.1), AlertEvaluator.Context.NONE, 20, true);
        assertEquals(1, next.size());
        assertEquals(R, next.get(0).getStatus(), "it was firing before the restart, so it resolves now");
    }

    @Test
    void alertsCarryTopExamplesRhoAndAShortSummary() {
        String layer = "model.layers.23.mlp.gate_proj." + "x".repeat(90);
        List<ExampleScore> top = new ArrayList<>();
        for (int i = 0; i < 15; i++) {
            top.add(new ExampleScore("ex-" + i, (double) (15 - i)));
        }
        AlertEvaluator e = new AlertEvaluator(List.of(threshold("gap-high", 0.25, 1)));
        Alert a = e.evaluate(gap(layer, 1, 0.5), new AlertEvaluator.Context(top, 0.9999), 1, true).get(0);
        ContractChecks.checkAlert(a);
        assertTrue(a.getSummary().length() < 64, a.getSummary());
        assertEquals(10, a.getTopExamples().size());
        assertEquals("ex-0", a.getTopExamples().get(0).getSampleId());
        assertEquals("0.999900", a.getDetails().get("rho"));
        Map<String, String> d = a.getDetails();
        assertEquals("threshold", d.get("type"));
    }

    /**
     * The guard's re-arm: a firing baseline rule resolves, older steps are ignored, the window
     * restarts from the edited model's values with the old threshold in force meanwhile, and the
     * refilled window may tighten that threshold but never loosen it (a slow regrowth must not
     * become the baseline).
     */
    @Test
    void rearmRestartsTheBaselineFromTheEditedModelWithoutLettingItDriftUp() {
        AlertRule jump = new AlertRule("gap-jump", "memorization_gap", AlertRule.Type.BASELINE, Double.NaN, false, 4, 5, 0.05, 1,
                Severity.CRITICAL, Set.of(), Set.of());
        AlertEvaluator e = new AlertEvaluator(List.of(jump));
        List<Alert> sink = new ArrayList<>();
        double[] clean = {0.001, 0.002, 0.001, 0.002};
        for (int i = 0; i < clean.length; i++) {
            assertEquals(List.of(), e.evaluate(gap("fc1", i, clean[i]), AlertEvaluator.Context.NONE, 1000 + i, true));
        }
        double before = TrailingBaseline.threshold(clean, 0, 4, 5, 0.05);
        List<Alert> fired = e.evaluate(gap("fc1", 10, 0.2), AlertEvaluator.Context.NONE, 2000, true);
        assertEquals(F, fired.get(0).getStatus());

        List<Alert> resolved = e.rearm("run-1", 20, "snap-1", 3000);
        assertEquals(1, resolved.size());
        assertEquals(R, resolved.get(0).getStatus());
        assertEquals(fired.get(0).getFingerprint(), resolved.get(0).getFingerprint());
        assertTrue(resolved.get(0).getDetails().get("rearmed").contains("snap-1"), resolved.get(0).getDetails().toString());
        ContractChecks.checkAlert(resolved.get(0));
        assertEquals(0, e.firingCount());
        assertEquals(List.of(), e.rearm("run-2", 20, "snap-2", 3000), "another run's rules are not touched");

        assertEquals(List.of(), e.evaluate(gap("fc1", 19, 0.9), AlertEvaluator.Context.NONE, 3100, true),
                "measured on the model before the snapshot: not evaluated");
        // the edited model: below the old threshold is normal and fills the new window ...
        assertEquals(List.of(), e.evaluate(gap("fc1", 21, before - 0.01), AlertEvaluator.Context.NONE, 3200, true));
        // ... and a regrowth above it fires before the new window is full
        List<Alert> again = e.evaluate(gap("fc1", 22, before + 0.001), AlertEvaluator.Context.NONE, 3300, true);
        assertEquals(F, again.get(0).getStatus());
        assertEquals(before, again.get(0).getThreshold(), 1e-12);
        assertEquals(3300, again.get(0).getFirstSeenMs(), "a new episode");

        // a refilled window of slowly rising values would loosen the threshold: the old one stays the bound
        e.rearm("run-1", 30, "snap-3", 4000);
        double[] rising = {0.0, 0.02, 0.04, before - 0.001};
        for (int i = 0; i < rising.length; i++) {
            assertEquals(List.of(), e.evaluate(gap("fc1", 31 + i, rising[i]), AlertEvaluator.Context.NONE, 4100 + i, true));
        }
        assertTrue(TrailingBaseline.threshold(rising, 0, 4, 5, 0.05) > before + 0.02, "the window alone would be looser");
        List<Alert> bound = e.evaluate(gap("fc1", 40, before + 0.001), AlertEvaluator.Context.NONE, 5000, true);
        assertEquals(F, bound.get(0).getStatus());
        assertEquals(before, bound.get(0).getThreshold(), 1e-12);
    }

    /** A rule after=snapshot: silent on a run without snapshots, anchored on the edited model's first value after each one. */
    @Test
    void aRegrowthRuleWatchesOnlyEditedModelsAndIsAnchoredOnEachEdit() {
        AlertRule regrowth = new AlertRule("gap-regrowth", "memorization_gap", AlertRule.Type.BASELINE, Double.NaN, false, 1, 0, 0.02, 1,
                Severity.WARNING, Set.of(), Set.of(), true);
        AlertEvaluator e = new AlertEvaluator(List.of(regrowth));
        for (int i = 0; i < 10; i++) {
            assertEquals(List.of(), e.evaluate(gap("fc1", i, 0.5 * i), AlertEvaluator.Context.NONE, i, true), "no snapshot, no evaluation");
        }
        e.rearm("run-1", 20, "snap-1", 100);
        assertEquals(List.of(), e.evaluate(gap("fc1", 21, 0.01), AlertEvaluator.Context.NONE, 101, true), "the anchor");
        assertEquals(List.of(), e.evaluate(gap("fc1", 22, 0.025), AlertEvaluator.Context.NONE, 102, true), "within 0.02 of it");
        assertEquals(List.of(), e.evaluate(gap("fc1", 23, 0.029), AlertEvaluator.Context.NONE, 103, true),
                "still within 0.02 of the anchor, not of the last value: a slow regrowth does not move it");
        List<Alert> back = e.evaluate(gap("fc1", 24, 0.031), AlertEvaluator.Context.NONE, 104, true);
        assertEquals(F, back.get(0).getStatus());
        assertEquals(0.03, back.get(0).getThreshold(), 1e-12);
        // the next edit anchors anew, also for a layer first seen after it
        e.rearm("run-1", 30, "snap-2", 200);
        assertEquals(List.of(), e.evaluate(gap("fc1", 31, 0.2), AlertEvaluator.Context.NONE, 201, true));
        assertEquals(List.of(), e.evaluate(gap("fc1", 32, 0.21), AlertEvaluator.Context.NONE, 202, true));
        assertEquals(List.of(), e.evaluate(gap("fc2", 31, 0.0), AlertEvaluator.Context.NONE, 203, true));
        assertEquals(F, e.evaluate(gap("fc2", 32, 0.05), AlertEvaluator.Context.NONE, 204, true).get(0).getStatus());
    }
}
