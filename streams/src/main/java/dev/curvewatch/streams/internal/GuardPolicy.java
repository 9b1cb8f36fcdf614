package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.streams.EditRule;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.function.Function;

/**
 * The live guard's policy (pure: no Kafka, no clock of its own). Every firing alert the streams
 * app validates is offered to it, repeats included, and gets exactly one decision with its
 * reason; feedback from the trainer (APPLIED, REFUSED, NOT_APPLIED) and the service (HARMFUL)
 * updates the per-layer {@link GuardState}. Against the failure modes:
 * <ul>
 *   <li><b>edit storms</b>: at most one edit per {@code cooldown.steps} per layer, none while the
 *       previous edit's snapshot is not applied, at most {@code max.edits}, then EXHAUSTED with a
 *       CRITICAL {@code guard-exhausted} alert;</li>
 *   <li><b>flapping</b>: decisions go by training steps and application, not by alert episodes, so
 *       an alert that resolves and fires again within the cooldown changes nothing;</li>
 *   <li><b>edits that do not hold</b>: triggered again within {@code escalate.within.steps} of an
 *       applied edit, the guard escalates once to every watched layer of the run (ESCALATE);</li>
 *   <li><b>a trainer that does not apply snapshots</b>: after {@code apply.timeout.steps} (or at
 *       once when the trainer says so) NOT_APPLIED, a WARNING {@code guard-not-applied} alert, and no
 *       further edits of the layer until an APPLIED arrives;</li>
 *   <li><b>an edit that hurt probe accuracy</b> (HARMFUL from the service): no automatic edits of
 *       the layer any more; the service offers the rollback.</li>
 * </ul>
 */
public final class GuardPolicy {
    /** The signal of the guard's own alerts (never a trigger). */
    public static final String GUARD_SIGNAL = "guard";

    /** What a decision changes: layer → new state, decisions to publish, at most one edit request and one alert. */
    public record Outcome(Map<String, GuardState> states, List<GuardDecision> decisions, EditRequest request, Alert alert) {
        static final Outcome NONE = new Outcome(Map.of(), List.of(), null, null);
    }

    private final List<EditRule> rules;
    private final String source;

    public GuardPolicy(List<EditRule> rules, String source) {
        this.rules = List.copyOf(rules);
        this.source = source;
    }

    /**
     * The decision on a validated alert.
     *
     * @param stateOf   the guard state of a layer of the alert's run
     * @param runLayers the run's watched layers (escalation edits them all)
     */
    public Outcome onAlert(Alert a, Function<String, GuardState> stateOf, List<String> runLayers, long nowMs) {
        if (a.getStatus() != AlertStatus.FIRING || GUARD_SIGNAL.equals(a.getSignal())) {
            return Outcome.NONE;
        }
        EditRule rule = rules.stream().filter(r -> r.matches(a)).findFirst().orElse(null);
        if (rule == null) {
            return decide(a, null, GuardAction.SKIP, "no guard rule takes a " + a.getSeverity() + " " + a.getSignal()
                    + " alert" + (a.getLayer() == null ? " without a layer" : ""), List.of(), null, Map.of(), nowMs);
        }
        EditRule.Limits lim = rule.limits();
        List<String> targets = new ArrayList<>(rule.layersFor(a));
        Map<String, GuardState> states = new LinkedHashMap<>();
        boolean escalated = false;
        for (String l : targets) {
            states.put(l, stateOf.apply(l));
            escalated |= states.get(l).escalated();
        }
        if (escalated) {
            targets = widen(targets, runLayers, states, stateOf);
        }
        Map<String, String> details = new LinkedHashMap<>();
        details.put("value", fmt(a.getValue()));
        details.put("threshold", fmt(a.getThreshold()));
        details.put("alert_rule", a.getRule());
        int edits = states.values().stream().mapToInt(GuardState::edits).max().orElse(0);
        details.put("edits", Integer.toString(edits));
        details.put("max_edits", Integer.toString(lim.maxEdits()));
        for (Map.Entry<String, GuardState> e : states.entrySet()) {
            GuardState s = e.getValue();
            String l = e.getKey();
            if (s.harmful()) {
                return decide(a, rule, GuardAction.SKIP, "an earlier edit of " + l + " hurt probe accuracy: no automatic edits "
                        + "of it any more (the service offered a rollback)", targets, null, details, nowMs);
            }
            if (s.exhausted()) {
                return decide(a, rule, GuardAction.SKIP, "the guard is exhausted for " + l + " after " + s.edits() + " edits",
                        targets, null, details, nowMs);
            }
            if (s.stalled()) {
                return decide(a, rule, GuardAction.SKIP, "the trainer has not applied the snapshot of " + s.pendingKey()
                        + ": no further edits of " + l + " until one is applied", targets, null, details, nowMs);
            }
            if (s.pendingKey() != null) {
                long waited = a.getStep() - s.pendingStep();
                if (waited >= lim.applyTimeoutSteps()) {
                    Map<String, GuardState> next = new LinkedHashMap<>();
                    states.forEach((k, v) -> next.put(k, v.pendingKey() != null ? v.markStalled() : v));
                    details.put("waited_steps", Long.toString(waited));
                    String why = "the snapshot of " + s.pendingKey() + " (requested at step " + s.pendingStep()
                            + ") is not applied " + waited + " steps later (apply.timeout.steps " + lim.applyTimeoutSteps()
                            + "): the trainer does not seem to apply snapshots; no further edits of " + l + " until it does";
                    return new Outcome(next, List.of(decision(a, rule, GuardAction.NOT_APPLIED, why, targets, s.pendingKey(),
                            details, nowMs)), null, guardAlert(a, l, "guard-not-applied", Severity.WARNING, waited,
                            lim.applyTimeoutSteps(), "guard: " + l + " snapshot not applied", why, nowMs));
                }
                return decide(a, rule, GuardAction.SKIP, "waiting for the trainer to apply the snapshot of " + s.pendingKey()
                        + " (requested at step " + s.pendingStep() + ")", targets, null, details, nowMs);
            }
            if (s.lastEditStep() >= 0 && a.getStep() - s.lastEditStep() < lim.cooldownSteps()) {
                return decide(a, rule, GuardAction.SKIP, "cooldown: " + l + " was edited at step " + s.lastEditStep()
                        + ", at most one edit per " + lim.cooldownSteps() + " steps", targets, null, details, nowMs);
            }
        }
        if (edits >= lim.maxEdits()) {
            Map<String, GuardState> next = new LinkedHashMap<>();
            states.forEach((k, v) -> next.put(k, v.markExhausted()));
            String why = "memorization is back after " + edits + " edits (max.edits " + lim.maxEdits()
                    + "): the guard stops editing " + String.join(", ", targets) + "; a person must decide";
            return new Outcome(next, List.of(decision(a, rule, GuardAction.EXHAUSTED, why, targets, null, details, nowMs)), null,
                    guardAlert(a, a.getLayer(), "guard-exhausted", Severity.CRITICAL, edits, lim.maxEdits(),
                            "guard exhausted: " + (a.getLayer() == null ? "run" : a.getLayer()), why, nowMs));
        }
        GuardAction action = GuardAction.EDIT;
        String why = a.getSeverity() + " " + a.getRule() + ": " + a.getSignal() + " " + fmt(a.getValue()) + " > "
                + fmt(a.getThreshold()) + " at step " + a.getStep();
        if (!escalated && lim.escalate() && runLayers.size() > targets.size()) {
            long applied = states.values().stream().mapToLong(GuardState::lastAppliedStep).max().orElse(-1);
            if (applied >= 0 && a.getStep() - applied <= lim.escalateWithinSteps()) {
                action = GuardAction.ESCALATE;
                escalated = true;
                targets = widen(targets, runLayers, states, stateOf);
                why += "; the last edit (applied after step " + applied + ") did not hold for " + lim.escalateWithinSteps()
                        + " steps: editing every watched layer from now on";
            }
        }
        int n = edits + 1;
        String key = key(rule.name(), a.getRunId(), a.getLayer(), n);
        details.put("edits", Integer.toString(n));
        List<LayerRho> layerRhos = new ArrayList<>();
        for (String l : targets) {
            layerRhos.add(new LayerRho(l, rule.rho()));
        }
        Map<String, GuardState> next = new LinkedHashMap<>();
        boolean esc = escalated;
        states.forEach((k, v) -> next.put(k, v.withPending(key, a.getStep(), esc)));
        EditRequest req = EditRequest.newBuilder().setIdempotencyKey(key).setRunId(a.getRunId()).setLayers(layerRhos)
                .setRequester("rule:" + rule.name()).setReason("guard edit " + n + " of at most " + lim.maxEdits() + ": " + why)
                .setAlertFingerprint(a.getFingerprint()).setCreatedMs(nowMs).build();
        return new Outcome(next, List.of(decision(a, rule, action, why + " (edit " + n + " of at most " + lim.maxEdits() + ")",
                targets, key, details, nowMs)), req, null);
    }

    /**
     * Feedback from the trainer or the service about an edit: the states it changes, and the
     * alert the guard raises for a trainer that says it does not apply snapshots. The guard's own
     * decisions (read back from the topic) change nothing.
     */
    public Outcome onDecision(GuardDecision d, Function<String, GuardState> stateOf, long nowMs) {
        if (source.equals(d.getSource())) {
            return Outcome.NONE;
        }
        List<String> layers = new ArrayList<>();
        d.getLayers().forEach(lr -> layers.add(lr.getLayer()));
        if (layers.isEmpty() && d.getLayer() != null) {
            layers.add(d.getLayer());
        }
        Map<String, GuardState> next = new LinkedHashMap<>();
        Alert raise = null;
        for (String l : layers) {
            GuardState s = stateOf.apply(l);
            switch (d.getAction()) {
                case APPLIED -> next.put(l, s.applied(d.getIdempotencyKey(), d.getStep()));
                case REFUSED -> next.put(l, s.refused(d.getIdempotencyKey()));
                case HARMFUL -> next.put(l, s.markHarmful());
                case NOT_APPLIED -> {
                    if (!s.stalled()) {
                        next.put(l, s.markStalled());
                        if (raise == null) {
                            raise = guardAlert(d.getRunId(), d.getStep(), l, "guard-not-applied", Severity.WARNING, 1, 1,
                                    "guard: " + l + " snapshot not applied", d.getReason(), nowMs);
                        }
                    }
                }
                default -> {
                    // REARMED, ROLLBACK_OFFERED, ...: for people and the dashboard
                }
            }
        }
        return next.isEmpty() ? Outcome.NONE : new Outcome(next, List.of(), null, raise);
    }

    private static List<String> widen(List<String> targets, List<String> runLayers, Map<String, GuardState> states,
                                      Function<String, GuardState> stateOf) {
        List<String> all = new ArrayList<>(targets);
        for (String l : runLayers) {
            if (!all.contains(l)) {
                all.add(l);
                states.put(l, stateOf.apply(l));
            }
        }
        return all;
    }

    private Outcome decide(Alert a, EditRule rule, GuardAction action, String why, List<String> targets, String key,
                           Map<String, String> details, long nowMs) {
        return new Outcome(Map.of(), List.of(decision(a, rule, action, why, targets, key, details, nowMs)), null, null);
    }

    private GuardDecision decision(Alert a, EditRule rule, GuardAction action, String why, List<String> targets, String key,
                                   Map<String, String> details, long nowMs) {
        List<LayerRho> layers = new ArrayList<>();
        for (String l : targets) {
            layers.add(new LayerRho(l, rule == null ? -1 : rule.rho()));
        }
        return GuardDecision.newBuilder().setId(UUID.randomUUID().toString()).setRunId(a.getRunId()).setLayer(a.getLayer())
                .setStep(a.getStep()).setAction(action).setReason(clip(why)).setSource(source)
                .setRule(rule == null ? null : rule.name()).setAlertFingerprint(a.getFingerprint()).setIdempotencyKey(key)
                .setLayers(layers).setDetails(new LinkedHashMap<>(details)).setCreatedMs(nowMs).build();
    }

    private Alert guardAlert(Alert a, String layer, String rule, Severity severity, double value, double threshold,
                             String summary, String why, long nowMs) {
        return guardAlert(a.getRunId(), a.getStep(), layer, rule, severity, value, threshold, summary, why, nowMs);
    }

    private Alert guardAlert(String run, long step, String layer, String rule, Severity severity, double value, double threshold,
                             String summary, String why, long nowMs) {
        Map<String, String> details = new LinkedHashMap<>();
        details.put("description", clip(why));
        details.put("source", source);
        return Alert.newBuilder().setId(UUID.randomUUID().toString()).setFingerprint(fingerprint(run, layer, rule))
                .setRunId(run).setStep(step).setLayer(layer).setRule(rule).setSignal(GUARD_SIGNAL).setValue(value)
                .setThreshold(threshold).setSeverity(severity).setStatus(AlertStatus.FIRING).setFirstSeenMs(nowMs)
                .setLastSeenMs(nowMs).setSummary(summary.length() < 64 ? summary : summary.substring(0, 63))
                .setDetails(details).build();
    }

    /** The edit's idempotency key: rule, run/layer and the edit's number, so a re-delivered alert cannot edit twice. */
    static String key(String rule, String run, String layer, int n) {
        String key = "rule:" + rule + ":" + hex(run + "|" + layer, 8) + ":" + n;
        return key.length() <= 128 ? key : "rule:" + hex(rule + "|" + run + "|" + layer, 16) + ":" + n;
    }

    /** The first 32 hex characters of sha256("run|layer|rule"), as the service fingerprints its alerts. */
    static String fingerprint(String run, String layer, String rule) {
        return hex(run + "|" + (layer == null ? "" : layer) + "|" + rule, 16);
    }

    private static String hex(String text, int bytes) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(d, 0, bytes);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String clip(String s) {
        return s.length() < ContractChecks.MAX_GUARD_REASON ? s : s.substring(0, ContractChecks.MAX_GUARD_REASON - 1);
    }

    private static String fmt(double v) {
        return String.format(Locale.ROOT, "%.4g", v);
    }
}
