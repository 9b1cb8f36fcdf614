package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.streams.EditRule;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The guard policy alone: one decision per firing alert, its limits, feedback, and the failure modes. */
class GuardPolicyTest {
    private static final List<String> LAYERS = List.of("fc1", "fc2");
    private static final EditRule.Limits LIMITS = new EditRule.Limits(50, 3, true, 120, 100);
    private final GuardPolicy policy = new GuardPolicy(List.of(new EditRule("guard", "memorization_gap", Severity.WARNING,
            Pattern.compile(".*"), List.of(), -1, LIMITS)), "streams:test");
    private final Map<String, GuardState> states = new HashMap<>();

    private static Alert alert(String layer, long step, Severity severity) {
        return Alert.newBuilder().setId("a" + step).setFingerprint("fp-" + layer).setRunId("run-1").setStep(step).setLayer(layer)
                .setRule("gap-jump").setSignal("memorization_gap").setValue(0.2).setThreshold(0.07).setSeverity(severity)
                .setStatus(AlertStatus.FIRING).setFirstSeenMs(1).setLastSeenMs(2).setSummary("gap").build();
    }

    private GuardPolicy.Outcome fire(String layer, long step) {
        return apply(policy.onAlert(alert(layer, step, Severity.WARNING), l -> states.getOrDefault(l, GuardState.NEW), LAYERS, 1000));
    }

    private GuardPolicy.Outcome feedback(GuardAction action, String key, long step, String... layers) {
        GuardDecision.Builder b = GuardDecision.newBuilder().setId("t").setRunId("run-1").setStep(step).setAction(action)
                .setReason("trainer says").setSource("trainer:run-1").setIdempotencyKey(key).setCreatedMs(1);
        b.setLayers(java.util.Arrays.stream(layers).map(l -> new LayerRho(l, 0.6)).toList());
        return apply(policy.onDecision(b.build(), l -> states.getOrDefault(l, GuardState.NEW), 1000));
    }

    private GuardPolicy.Outcome apply(GuardPolicy.Outcome o) {
        states.putAll(o.states());
        for (GuardDecision d : o.decisions()) {
            ContractChecks.checkGuardDecision(d);
        }
        if (o.alert() != null) {
            ContractChecks.checkAlert(o.alert());
        }
        return o;
    }

    private static GuardAction action(GuardPolicy.Outcome o) {
        assertEquals(1, o.decisions().size(), "exactly one decision per firing alert");
        return o.decisions().get(0).getAction();
    }

    @Test
    void editsWaitsForTheSnapshotThenKeepsTheCooldownThenEditsAgain() {
        GuardPolicy.Outcome first = fire("fc1", 300);
        assertEquals(GuardAction.EDIT, action(first));
        assertNotNull(first.request());
        assertEquals(List.of(new LayerRho("fc1", -1.0)), first.request().getLayers(), "the alert's layer at the calibrated rho");
        String key = first.request().getIdempotencyKey();
        assertTrue(key.startsWith("rule:guard:"), key);

        GuardPolicy.Outcome waiting = fire("fc1", 310);
        assertEquals(GuardAction.SKIP, action(waiting));
        assertNull(waiting.request());
        assertTrue(waiting.decisions().get(0).getReason().contains("waiting for the trainer to apply"), waiting.toString());

        feedback(GuardAction.APPLIED, key, 320, "fc1");
        GuardPolicy.Outcome cooling = fire("fc1", 340);
        assertEquals(GuardAction.SKIP, action(cooling));
        assertTrue(cooling.decisions().get(0).getReason().startsWith("cooldown"), cooling.toString());

        // past the cooldown but within escalate.within of the application: the edit did not hold
        GuardPolicy.Outcome again = fire("fc1", 360);
        assertEquals(GuardAction.ESCALATE, action(again));
        assertEquals(List.of("fc1", "fc2"), again.request().getLayers().stream().map(LayerRho::getLayer).toList());
        assertTrue(!again.request().getIdempotencyKey().equals(key), "a new edit, a new key");
        assertEquals(1, states.get("fc2").edits(), "the escalated edit counts for every layer it edits");
        assertEquals(2, states.get("fc1").edits());
    }

    @Test
    void aFlapWithinTheCooldownChangesNothingAndRepeatsNeverEditTwice() {
        String key = fire("fc2", 100).request().getIdempotencyKey();
        feedback(GuardAction.APPLIED, key, 101, "fc2");
        for (long step = 102; step < 150; step += 7) {
            GuardPolicy.Outcome o = fire("fc2", step);
            assertEquals(GuardAction.SKIP, action(o));
            assertNull(o.request());
        }
        assertEquals(1, states.get("fc2").edits());
    }

    @Test
    void afterMaxEditsTheGuardIsExhaustedAndRaisesOneCriticalAlert() {
        long step = 0;
        for (int i = 0; i < LIMITS.maxEdits(); i++) {
            GuardPolicy.Outcome o = fire("fc1", step);
            assertNotNull(o.request(), "edit " + (i + 1));
            feedback(GuardAction.APPLIED, o.request().getIdempotencyKey(), step + 1, "fc1", "fc2");
            step += 500; // beyond the cooldown and escalate.within: no escalation either
        }
        GuardPolicy.Outcome done = fire("fc1", step);
        assertEquals(GuardAction.EXHAUSTED, action(done));
        assertNull(done.request());
        assertNotNull(done.alert());
        assertEquals(Severity.CRITICAL, done.alert().getSeverity());
        assertEquals("guard-exhausted", done.alert().getRule());
        assertEquals(GuardPolicy.GUARD_SIGNAL, done.alert().getSignal());
        GuardPolicy.Outcome after = fire("fc1", step + 1000);
        assertEquals(GuardAction.SKIP, action(after));
        assertNull(after.alert(), "exhausted is said once");
        // the guard's own alert is never a trigger
        assertEquals(0, policy.onAlert(done.alert(), l -> GuardState.NEW, LAYERS, 1).decisions().size());
    }

    @Test
    void aTrainerThatDoesNotApplyStopsTheGuardUntilItDoes() {
        String key = fire("fc1", 0).request().getIdempotencyKey();
        assertEquals(GuardAction.SKIP, action(fire("fc1", 99)));
        GuardPolicy.Outcome late = fire("fc1", 100);
        assertEquals(GuardAction.NOT_APPLIED, action(late));
        assertEquals("guard-not-applied", late.alert().getRule());
        assertEquals(Severity.WARNING, late.alert().getSeverity());
        for (long step = 200; step < 1000; step += 100) {
            GuardPolicy.Outcome o = fire("fc1", step);
            assertEquals(GuardAction.SKIP, action(o), "no storm while snapshots are not applied");
            assertNull(o.request());
            assertNull(o.alert());
        }
        feedback(GuardAction.APPLIED, key, 1000, "fc1");
        assertEquals(GuardAction.EDIT, action(fire("fc1", 2000)), "edits again once the trainer applies");
    }

    @Test
    void aTrainerSayingItDoesNotApplyStallsAtOnce() {
        String key = fire("fc2", 10).request().getIdempotencyKey();
        GuardPolicy.Outcome o = feedback(GuardAction.NOT_APPLIED, key, 11, "fc2");
        assertNotNull(o.alert());
        assertTrue(states.get("fc2").stalled());
        assertEquals(GuardAction.SKIP, action(fire("fc2", 500)));
    }

    @Test
    void aHarmfulEditStopsAutomaticEditsOfItsLayers() {
        String key = fire("fc1", 10).request().getIdempotencyKey();
        feedback(GuardAction.APPLIED, key, 11, "fc1");
        GuardDecision harmful = GuardDecision.newBuilder().setId("h").setRunId("run-1").setStep(20).setAction(GuardAction.HARMFUL)
                .setReason("probe accuracy 0.99 -> 0.90").setSource("service:x").setIdempotencyKey(key)
                .setLayers(List.of(new LayerRho("fc1", 0.6))).setCreatedMs(1).build();
        apply(policy.onDecision(harmful, l -> states.getOrDefault(l, GuardState.NEW), 1));
        GuardPolicy.Outcome o = fire("fc1", 1000);
        assertEquals(GuardAction.SKIP, action(o));
        assertTrue(o.decisions().get(0).getReason().contains("hurt probe accuracy"), o.toString());
        assertEquals(GuardAction.EDIT, action(fire("fc2", 1000)), "the other layer is still guarded");
    }

    @Test
    void criticalAndWarningBothTriggerAndUnmatchedAlertsAreSkippedWithAReason() {
        GuardPolicy critical = new GuardPolicy(List.of(new EditRule("crit", "memorization_gap", Severity.CRITICAL,
                Pattern.compile(".*"), List.of(), -1, LIMITS)), "streams:test");
        GuardPolicy.Outcome o = critical.onAlert(alert("fc1", 5, Severity.WARNING), l -> GuardState.NEW, LAYERS, 1);
        assertEquals(GuardAction.SKIP, action(o));
        assertTrue(o.decisions().get(0).getReason().startsWith("no guard rule"), o.toString());
        assertEquals(GuardAction.EDIT, action(critical.onAlert(alert("fc1", 5, Severity.CRITICAL), l -> GuardState.NEW, LAYERS, 1)));
        assertEquals(GuardAction.EDIT, action(fire("fc1", 5)), "a WARNING rule takes WARNING");
    }

    @Test
    void itsOwnDecisionsChangeNothingAndStateSurvivesTheStore() {
        GuardDecision own = fire("fc1", 0).decisions().get(0);
        assertEquals(0, policy.onDecision(own, l -> GuardState.NEW, 1).states().size());
        GuardState s = states.get("fc1");
        assertEquals(s, GuardState.decode(s.encode()));
        assertEquals(GuardState.NEW, GuardState.decode(null));
    }
}
