package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.curvature.TrailingBaseline;
import dev.curvewatch.service.AlertRule;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.UUID;

/**
 * Evaluates the alert rules on every new value of a signal (SERVICE-CONTRACT §3), per run, layer
 * and rule:
 * <ul>
 *   <li>a value <em>matches</em> by the rule's type (threshold, trailing baseline, rate);</li>
 *   <li>after {@code for} consecutive matches the rule fires: a FIRING alert, and again on every
 *       later evaluation while it fires (streams de-duplicates the repeats);</li>
 *   <li>after {@code for} consecutive misses it resolves: one RESOLVED alert;</li>
 *   <li>a baseline rule's window takes only values that neither matched nor were seen while the
 *       rule fired, so a memorization in progress never becomes the baseline.</li>
 * </ul>
 * {@code publish = false} replays history into the state (after a restart) without producing
 * alerts. {@link #rearm} restarts a run's rules on an edited model (the live guard).
 *
 * <p><b>Re-arms in a replay.</b> The state is rebuilt from the signals topic (a restart, or an
 * instance that follows another's runs), so a re-arm has to be where those signals are: the owner
 * publishes a {@link #REARM_MARKER} signal per layer of the run (and one for the run-level series)
 * in the same order as it evaluates ({@code Outputs.rearm}), and the replay meets each marker at
 * exactly the place of its layer's sequence where the live re-arm happened ({@link #replayRearm}).
 * A rule's state depends only on its own (run, layer) sequence, so per-layer markers reproduce the
 * live state, windows, fallbacks and the {@code after=snapshot} anchor included. Reading
 * guard-decisions first and re-arming "by step" would not: a signal of the applied step may have
 * been evaluated before or after the live re-arm, and guard-decisions has no order with signals.
 * Thread-safe (one lock; evaluations are cheap).
 */
public final class AlertEvaluator {
    /** What an alert reports beside the signal: the layer's top EXACT examples and its calibrated rho (NaN if none). */
    public record Context(List<ExampleScore> topExamples, double rho) {
        public static final Context NONE = new Context(List.of(), Double.NaN);
    }

    private static final class RuleState {
        final String runId;
        /** Null for run-level series. */
        final String layer;
        final AlertRule rule;
        TrailingBaseline baseline;
        final ArrayDeque<Double> past = new ArrayDeque<>();
        int matches;
        int misses;
        boolean firing;
        long firstSeenMs;
        /** After a re-arm: signals of older steps (the model before the snapshot) are not evaluated. */
        long armedFromStep = Long.MIN_VALUE;
        /** After a re-arm: the threshold in force until the restarted window is full, and a bound afterwards (NaN: none). */
        double fallback = Double.NaN;
        /** Re-armed at least once (an applied snapshot): rules {@code after=snapshot} are evaluated from then on. */
        boolean rearmed;
        Signal last;
        double lastThreshold;

        RuleState(AlertRule r, String runId, String layer) {
            this.runId = runId;
            this.layer = layer;
            this.rule = r;
            baseline = r.type() == AlertRule.Type.BASELINE ? new TrailingBaseline(r.window(), r.k(), r.floor()) : null;
        }
    }

    /** The signal that marks a re-arm in the signals topic: value and step = the step after which the snapshot was applied. */
    public static final String REARM_MARKER = "rearmed";

    private final List<AlertRule> rules;
    private final Map<String, RuleState> states = new HashMap<>();
    /** run → the step after which its latest snapshot was applied (rules of layers seen later start re-armed). */
    private final Map<String, Long> rearmedRuns = new HashMap<>();
    /** run/layer → the step of its latest re-arm marker replayed (rules of the layer seen later start re-armed). */
    private final Map<String, Long> rearmedLayers = new HashMap<>();

    public AlertEvaluator(List<AlertRule> rules) {
        this.rules = List.copyOf(rules);
    }

    public List<AlertRule> rules() {
        return rules;
    }

    /** Evaluates every rule watching this signal; returns the alerts to publish (none when {@code publish} is false). */
    public synchronized List<Alert> evaluate(Signal s, Context ctx, long nowMs, boolean publish) {
        List<Alert> out = new ArrayList<>();
        if (!Double.isFinite(s.getValue())) {
            return out;
        }
        for (AlertRule rule : rules) {
            if (!rule.applies(s.getName(), s.getRunId(), s.getLayer())) {
                continue;
            }
            String fp = Fingerprints.alert(s.getRunId(), s.getLayer(), rule.name());
            RuleState st = states.computeIfAbsent(fp, k -> {
                RuleState fresh = new RuleState(rule, s.getRunId(), s.getLayer());
                Long armed = armedFrom(s.getRunId(), s.getLayer());
                if (armed != null) {
                    fresh.rearmed = true;
                    fresh.armedFromStep = armed;
                }
                return fresh;
            });
            if (s.getStep() < st.armedFromStep || (rule.afterSnapshot() && !st.rearmed)) {
                continue; // measured on the model before the snapshot the rule was re-armed on, or not armed yet
            }
            double value = s.getValue();
            double threshold;
            boolean match;
            Map<String, String> details = new LinkedHashMap<>();
            details.put("type", rule.type().name().toLowerCase(Locale.ROOT));
            details.put("for", Integer.toString(rule.holdFor()));
            double reported = value;
            switch (rule.type()) {
                case THRESHOLD -> {
                    threshold = rule.threshold();
                    match = rule.below() ? value < threshold : value > threshold;
                }
                case BASELINE -> {
                    details.put("window", Integer.toString(rule.window()));
                    details.put("window_values", Integer.toString(st.baseline.size()));
                    if (st.baseline.isReady()) {
                        double window = st.baseline.threshold().getAsDouble();
                        if (st.rearmed && !Double.isFinite(st.fallback)) {
                            st.fallback = window; // the edited model's first full window anchors the rule
                        }
                        // after a re-arm the edited model's window may tighten the threshold, never loosen it
                        threshold = Math.min(window, Double.isFinite(st.fallback) ? st.fallback : Double.POSITIVE_INFINITY);
                        match = value > threshold;
                        details.put("window_mean", fmt(st.baseline.mean()));
                        details.put("window_sd", fmt(st.baseline.sd()));
                    } else if (Double.isFinite(st.fallback)) {
                        threshold = st.fallback; // re-armed: the threshold from before the edit until the new window is full
                        match = value > threshold;
                        details.put("rearmed_threshold", fmt(threshold));
                    } else {
                        threshold = Double.NaN;
                        match = false;
                    }
                }
                case RATE -> {
                    threshold = rule.threshold();
                    details.put("window", Integer.toString(rule.window()));
                    if (st.past.size() >= rule.window()) {
                        double before = st.past.peekFirst();
                        reported = value - before;
                        match = rule.below() ? reported < threshold : reported > threshold;
                        details.put("previous_value", fmt(before));
                        details.put("signal_value", fmt(value));
                    } else {
                        match = false;
                    }
                    st.past.addLast(value);
                    while (st.past.size() > rule.window()) {
                        st.past.removeFirst();
                    }
                }
                default -> throw new IllegalStateException(rule.type().name());
            }
            if (match) {
                st.matches++;
                st.misses = 0;
            } else {
                st.misses++;
                st.matches = 0;
            }
            AlertStatus status = null;
            if (!st.firing && st.matches >= rule.holdFor()) {
                st.firing = true;
                st.firstSeenMs = nowMs;
                status = AlertStatus.FIRING;
            } else if (st.firing && st.misses >= rule.holdFor()) {
                st.firing = false;
                status = AlertStatus.RESOLVED;
            } else if (st.firing) {
                status = AlertStatus.FIRING; // a repeat, or held against flapping
            }
            if (st.baseline != null && !match && !st.firing) {
                st.baseline.admit(value); // includes the value that resolves an alert: it is normal again
            }
            st.last = s;
            st.lastThreshold = threshold;
            if (status == null || !publish) {
                continue;
            }
            if (Double.isFinite(ctx.rho())) {
                details.put("rho", fmt(ctx.rho()));
            }
            details.put("factor_version", Long.toString(s.getFactorVersion()));
            double thr = Double.isFinite(threshold) ? threshold : 0;
            out.add(Alert.newBuilder()
                    .setId(UUID.randomUUID().toString())
                    .setFingerprint(fp)
                    .setRunId(s.getRunId())
                    .setStep(s.getStep())
                    .setLayer(s.getLayer())
                    .setRule(rule.name())
                    .setSignal(s.getName())
                    .setValue(reported)
                    .setThreshold(thr)
                    .setSeverity(rule.severity())
                    .setStatus(status)
                    .setFirstSeenMs(Math.min(st.firstSeenMs, nowMs))
                    .setLastSeenMs(nowMs)
                    .setTopExamples(ctx.topExamples().size() > 10 ? ctx.topExamples().subList(0, 10) : ctx.topExamples())
                    .setSummary(summary(status, s, rule, reported, thr))
                    .setDetails(details)
                    .build());
        }
        return out;
    }

    /**
     * Re-arms every rule of a run on an edited model (the trainer applied a snapshot after step
     * {@code step}): a firing rule resolves (one RESOLVED, "re-armed" in its details), hold counts
     * start again, values of older steps are no longer evaluated, and a baseline rule's window
     * restarts from the edited model's values. Until that window is full again, the threshold the
     * old window gave stays in force, so the edited model is never unwatched, and afterwards the
     * new window may tighten it but not loosen it: a slow regrowth of memorization must not become
     * the baseline. Without an old threshold (the window was not full yet) the rule waits for its
     * window as at the start of a run. Rules {@code after=snapshot} start being evaluated here and are
     * anchored anew on every edit: their first full window of the edited model's values is their
     * bound until the next re-arm.
     *
     * @return the RESOLVED alerts to publish
     */
    public synchronized List<Alert> rearm(String runId, long step, String snapshotId, long nowMs) {
        List<Alert> out = new ArrayList<>();
        rearmedRuns.merge(runId, step, Math::max);
        for (Map.Entry<String, RuleState> e : states.entrySet()) {
            RuleState st = e.getValue();
            if (!st.runId.equals(runId)) {
                continue;
            }
            if (st.firing && st.last != null) {
                Map<String, String> details = new LinkedHashMap<>();
                details.put("rearmed", "snapshot " + snapshotId + " applied after step " + step);
                double thr = Double.isFinite(st.lastThreshold) ? st.lastThreshold : 0;
                out.add(Alert.newBuilder().setId(UUID.randomUUID().toString()).setFingerprint(e.getKey()).setRunId(runId)
                        .setStep(Math.max(step, st.last.getStep())).setLayer(st.last.getLayer()).setRule(st.rule.name())
                        .setSignal(st.last.getName()).setValue(st.last.getValue()).setThreshold(thr)
                        .setSeverity(st.rule.severity()).setStatus(AlertStatus.RESOLVED)
                        .setFirstSeenMs(Math.min(st.firstSeenMs, nowMs)).setLastSeenMs(nowMs)
                        .setSummary(summary(AlertStatus.RESOLVED, st.last, st.rule, st.last.getValue(), thr))
                        .setDetails(details).build());
            }
            restart(st, step);
        }
        return out;
    }

    /**
     * A signal read back from the signals topic (a restart's replay, or another instance's signal):
     * a {@link #REARM_MARKER} re-arms its layer ({@link #replayRearm}), any other is evaluated without
     * publishing.
     */
    public void replay(Signal s) {
        if (REARM_MARKER.equals(s.getName())) {
            replayRearm(s.getRunId(), s.getLayer(), s.getStep());
        } else {
            evaluate(s, Context.NONE, s.getTimestampMs(), false);
        }
    }

    /**
     * A re-arm met in a replay of the signals topic (a {@link #REARM_MARKER} of this layer, null:
     * the run-level series): the rules of that (run, layer) are re-armed as {@link #rearm} did live
     * at that place of the layer's sequence, silently (the owner published the RESOLVED alerts then).
     */
    public synchronized void replayRearm(String runId, String layer, long step) {
        rearmedLayers.merge(layerKey(runId, layer), step, Math::max);
        for (RuleState st : states.values()) {
            if (st.runId.equals(runId) && Objects.equals(layer, st.layer)) {
                restart(st, step);
            }
        }
    }

    /** The latest step a re-arm of the run was made or replayed at ({@link Long#MIN_VALUE}: none). */
    public synchronized long rearmedUpTo(String runId) {
        long upTo = rearmedRuns.getOrDefault(runId, Long.MIN_VALUE);
        for (Map.Entry<String, Long> e : rearmedLayers.entrySet()) {
            if (e.getKey().startsWith(runId + "|")) {
                upTo = Math.max(upTo, e.getValue());
            }
        }
        return upTo;
    }

    /** The (run, layer)s holding rule state (layer null: run-level series), the re-arm markers' keys. */
    public synchronized Set<String> layers(String runId) {
        Set<String> out = new LinkedHashSet<>();
        states.values().stream().filter(st -> st.runId.equals(runId)).forEach(st -> out.add(st.layer));
        return out;
    }

    private Long armedFrom(String runId, String layer) {
        Long byRun = rearmedRuns.get(runId);
        Long byLayer = rearmedLayers.get(layerKey(runId, layer));
        return byRun == null ? byLayer : byLayer == null ? byRun : Long.valueOf(Math.max(byRun, byLayer));
    }

    private static String layerKey(String runId, String layer) {
        return runId + "|" + (layer == null ? "" : layer);
    }

    private static void restart(RuleState st, long step) {
        st.firing = false;
        st.matches = 0;
        st.misses = 0;
        st.past.clear();
        st.armedFromStep = Math.max(st.armedFromStep, step);
        if (st.baseline != null) {
            if (!st.rule.afterSnapshot() && st.baseline.isReady()) {
                double t = st.baseline.threshold().getAsDouble();
                st.fallback = Double.isFinite(st.fallback) ? Math.min(st.fallback, t) : t;
            } else if (st.rule.afterSnapshot()) {
                st.fallback = Double.NaN; // a rule of the edited model: anchored anew on this edit's model
            }
            st.baseline = new TrailingBaseline(st.rule.window(), st.rule.k(), st.rule.floor());
        }
        st.rearmed = true;
    }

    /** Drops the state of every rule of a run (the run was forgotten: no alert of it is pending any more). */
    public synchronized void forgetRun(String runId) {
        states.values().removeIf(st -> st.runId.equals(runId));
        rearmedRuns.remove(runId);
        rearmedLayers.keySet().removeIf(k -> k.startsWith(runId + "|"));
    }

    /** Run/layer/rule combinations with state (firing or not). */
    public synchronized int stateCount() {
        return states.size();
    }

    /** Rule/run/layer combinations firing now. */
    public synchronized int firingCount() {
        return (int) states.values().stream().filter(s -> s.firing).count();
    }

    static String summary(AlertStatus status, Signal s, AlertRule rule, double value, double threshold) {
        String where = s.getLayer() == null ? "" : s.getLayer() + " ";
        String op = rule.below() ? "<" : ">";
        String what = rule.type() == AlertRule.Type.RATE ? "d" + s.getName() : s.getName();
        String text = String.format(Locale.ROOT, "%s%s%s %.3g %s %.3g", status == AlertStatus.RESOLVED ? "resolved: " : "", where,
                what, value, op, threshold);
        return text.length() < 64 ? text : text.substring(0, 63);
    }

    private static String fmt(double v) {
        return String.format(Locale.ROOT, "%.6g", v);
    }
}
