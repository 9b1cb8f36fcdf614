package dev.curvewatch.streams.internal;

/** Node and store names of the topology (stable: they name changelog topics and metrics). */
public final class Names {
    public static final String RUNS_SOURCE = "runs-source";
    public static final String ALERTS_RAW_SOURCE = "alerts-raw-source";
    public static final String DEAD_LETTERS_SOURCE = "dead-letters-source";
    public static final String GUARD_DECISIONS_SOURCE = "guard-decisions-source";
    public static final String RUN_REGISTRY = "run-registry";
    public static final String ALERT_DEDUP = "alert-dedup";
    public static final String GUARD = "guard";
    public static final String DEAD_LETTER_STATS = "dead-letter-stats";
    public static final String ALERTS_SINK = "alerts-sink";
    public static final String EDIT_REQUESTS_SINK = "edit-requests-sink";
    public static final String DEAD_LETTERS_SINK = "dead-letters-sink";
    public static final String GUARD_DECISIONS_SINK = "guard-decisions-sink";
    public static final String GUARD_ALERTS_SINK = "guard-alerts-sink";

    public static final String RUNS_STORE = "run-registry-store";
    public static final String ALERT_STATE_STORE = "alert-state-store";
    public static final String ALERT_RESOLVING_STORE = "alert-resolving-store";
    public static final String DEAD_LETTER_COUNTS_STORE = "dead-letter-counts-store";
    public static final String GUARD_STATE_STORE = "guard-state-store";

    private Names() {
    }
}
