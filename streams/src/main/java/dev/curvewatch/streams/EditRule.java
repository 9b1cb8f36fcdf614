package dev.curvewatch.streams;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.Severity;

import java.util.List;
import java.util.regex.Pattern;

/**
 * A guard rule: which firing alerts may turn into edit requests (DESIGN §4), and the limits the
 * guard keeps while it edits again and again ({@link Limits}).
 *
 * @param name        rule name; the request's requester is {@code rule:<name>}
 * @param signal      signal the alert must be about ({@code *} for any)
 * @param minSeverity lowest severity that triggers (WARNING and CRITICAL both work)
 * @param runs        run ids the rule applies to (full match)
 * @param layers      layers to edit; empty means the alert's own layer
 * @param rho         ρ for every layer; ≤ 0 asks the service for its calibrated ρ
 * @param limits      how often, how many times, and how the guard escalates
 */
public record EditRule(String name, String signal, Severity minSeverity, Pattern runs, List<String> layers, double rho,
                       Limits limits) {

    /**
     * The guard's limits per run and layer.
     *
     * @param cooldownSteps       at most one edit per this many training steps (alert steps)
     * @param maxEdits            edits at most; the next trigger is EXHAUSTED with a CRITICAL alert
     * @param escalate            when memorization comes back within {@code escalateWithinSteps} of an applied
     *                            edit, edit every watched layer of the run from then on (ESCALATE)
     * @param escalateWithinSteps what "came back quickly" means, in steps after the edit was applied
     * @param applyTimeoutSteps   an edit whose snapshot the trainer has not applied this many steps after it was
     *                            requested is NOT_APPLIED: the guard stops editing the layer until one is applied
     */
    public record Limits(long cooldownSteps, int maxEdits, boolean escalate, long escalateWithinSteps, long applyTimeoutSteps) {
        /** The shipped limits (streams/README.md says why these numbers). */
        public static final Limits DEFAULTS = new Limits(40, 20, true, 200, 200);

        public Limits {
            if (cooldownSteps < 0 || maxEdits < 1 || escalateWithinSteps < 0 || applyTimeoutSteps < 1) {
                throw new IllegalArgumentException("guard limits: cooldown and escalate.within >= 0, max.edits and "
                        + "apply.timeout >= 1; got " + cooldownSteps + ", " + maxEdits + ", " + escalateWithinSteps + ", "
                        + applyTimeoutSteps);
            }
        }
    }

    public EditRule {
        layers = List.copyOf(layers);
    }

    /** A rule with the default {@link Limits}. */
    public EditRule(String name, String signal, Severity minSeverity, Pattern runs, List<String> layers, double rho) {
        this(name, signal, minSeverity, runs, layers, rho, Limits.DEFAULTS);
    }

    /** Whether this firing alert triggers the rule. */
    public boolean matches(Alert a) {
        return a.getStatus() == AlertStatus.FIRING
                && a.getSeverity().ordinal() >= minSeverity.ordinal()
                && ("*".equals(signal) || signal.equals(a.getSignal()))
                && runs.matcher(a.getRunId()).matches()
                && (!layers.isEmpty() || a.getLayer() != null);
    }

    /** The layers an edit triggered by this alert edits before any escalation. */
    public List<String> layersFor(Alert a) {
        return layers.isEmpty() ? List.of(a.getLayer()) : layers;
    }
}
