package dev.curvewatch.service;

import dev.curvewatch.avro.Severity;
import dev.curvewatch.schemas.ContractChecks;

import java.util.Set;

/**
 * One alert rule of the service (SERVICE-CONTRACT §3), evaluated on every new value of its
 * signal per run and layer.
 *
 * @param name      rule name (id syntax: it is part of the alert's fingerprint)
 * @param signal    the signal it watches, e.g. memorization_gap
 * @param type      how a value matches
 * @param threshold THRESHOLD: the value must exceed it; RATE: the change over {@code window} evaluations must
 * @param below     THRESHOLD and RATE: match when the value (change) falls below {@code threshold} instead
 * @param window    BASELINE: trailing values; RATE: evaluations back
 * @param k         BASELINE: multiple of the window's standard deviation
 * @param floor     BASELINE: smallest margin above the window mean
 * @param holdFor   fire after this many consecutive matches, resolve after as many consecutive misses
 * @param severity  severity of its alerts
 * @param runs      only these runs (empty: all)
 * @param layers    only these layers (empty: all)
 * @param afterSnapshot evaluated only once the trainer applied an edited snapshot of the run (the
 *                  guard's rules for memorization coming back); a clean run never evaluates it
 */
public record AlertRule(String name, String signal, Type type, double threshold, boolean below, int window, double k,
                        double floor, int holdFor, Severity severity, Set<String> runs, Set<String> layers,
                        boolean afterSnapshot) {

    /** A rule evaluated from the start of a run. */
    public AlertRule(String name, String signal, Type type, double threshold, boolean below, int window, double k,
                     double floor, int holdFor, Severity severity, Set<String> runs, Set<String> layers) {
        this(name, signal, type, threshold, below, window, k, floor, holdFor, severity, runs, layers, false);
    }

    /** How a rule matches a value. */
    public enum Type {
        /** value &gt; threshold (or &lt; with below) */
        THRESHOLD,
        /** value &gt; mean + max(k·sd, floor) of the previous {@code window} values not seen while firing */
        BASELINE,
        /** value − the value {@code window} evaluations ago &gt; threshold (or &lt; with below) */
        RATE
    }

    public AlertRule {
        ContractChecks.requireId(name, "alert rule name");
        if (signal == null || signal.isBlank()) {
            throw new IllegalArgumentException("alert rule " + name + " needs a signal");
        }
        if (window < 1 || holdFor < 1) {
            throw new IllegalArgumentException("alert rule " + name + ": window and for must be >= 1");
        }
        if (type != Type.BASELINE && !Double.isFinite(threshold)) {
            throw new IllegalArgumentException("alert rule " + name + " (" + type + ") needs a finite threshold");
        }
        if (type == Type.BASELINE && (!(k >= 0) || !(floor >= 0) || Double.isInfinite(k) || Double.isInfinite(floor))) {
            throw new IllegalArgumentException("alert rule " + name + ": k and floor must be finite and >= 0");
        }
        runs = Set.copyOf(runs);
        layers = Set.copyOf(layers);
    }

    /** Whether this rule watches the given signal of the run and layer. */
    public boolean applies(String signalName, String runId, String layer) {
        return signal.equals(signalName) && (runs.isEmpty() || runs.contains(runId))
                && (layers.isEmpty() || (layer != null && layers.contains(layer)));
    }
}
