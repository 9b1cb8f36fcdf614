package dev.curvewatch.streams.internal;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What the guard remembers per run and layer (a small text value in the guard store, so it needs
 * no schema of its own and survives restarts through the store's changelog).
 *
 * @param edits           edits requested for the layer so far
 * @param lastEditStep    alert step of the latest edit (-1: none)
 * @param escalated       edits cover every watched layer from now on
 * @param pendingKey      idempotency key of an edit whose snapshot is not applied yet (null: none)
 * @param pendingStep     alert step that edit was requested at
 * @param lastAppliedStep step after which the trainer last applied a snapshot of this layer (-1: never)
 * @param stalled         the trainer did not apply (or said it does not apply) a snapshot: no edits until one is
 * @param exhausted       the guard gave up on the layer (maximum edits)
 * @param harmful         the service found that an edit hurt probe accuracy: no automatic edits any more
 */
public record GuardState(int edits, long lastEditStep, boolean escalated, String pendingKey, long pendingStep,
                         long lastAppliedStep, boolean stalled, boolean exhausted, boolean harmful) {
    public static final GuardState NEW = new GuardState(0, -1, false, null, -1, -1, false, false, false);

    public GuardState withPending(String key, long step, boolean escalate) {
        return new GuardState(edits + 1, step, escalated || escalate, key, step, lastAppliedStep, false, exhausted, harmful);
    }

    public GuardState applied(String key, long step) {
        boolean mine = key != null && key.equals(pendingKey);
        return new GuardState(edits, lastEditStep, escalated, mine ? null : pendingKey, mine ? -1 : pendingStep,
                Math.max(lastAppliedStep, step), mine ? false : stalled, exhausted, harmful);
    }

    public GuardState refused(String key) {
        boolean mine = key != null && key.equals(pendingKey);
        return mine ? new GuardState(edits, lastEditStep, escalated, null, -1, lastAppliedStep, stalled, exhausted, harmful) : this;
    }

    public GuardState markStalled() {
        return new GuardState(edits, lastEditStep, escalated, pendingKey, pendingStep, lastAppliedStep, true, exhausted, harmful);
    }

    public GuardState markExhausted() {
        return new GuardState(edits, lastEditStep, escalated, pendingKey, pendingStep, lastAppliedStep, stalled, true, harmful);
    }

    public GuardState markHarmful() {
        return new GuardState(edits, lastEditStep, escalated, pendingKey, pendingStep, lastAppliedStep, stalled, exhausted, true);
    }

    /** {@code key=value;...}, the store's value. */
    public String encode() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("edits", edits);
        m.put("lastEditStep", lastEditStep);
        m.put("escalated", escalated);
        m.put("pendingKey", pendingKey == null ? "" : pendingKey);
        m.put("pendingStep", pendingStep);
        m.put("lastAppliedStep", lastAppliedStep);
        m.put("stalled", stalled);
        m.put("exhausted", exhausted);
        m.put("harmful", harmful);
        StringBuilder b = new StringBuilder();
        m.forEach((k, v) -> b.append(b.length() == 0 ? "" : ";").append(k).append('=').append(v));
        return b.toString();
    }

    /** The state a store value holds; NEW for null. Keys are ids (no ';' or '='), so the split is exact. */
    public static GuardState decode(String text) {
        if (text == null || text.isEmpty()) {
            return NEW;
        }
        Map<String, String> m = new LinkedHashMap<>();
        for (String part : text.split(";")) {
            int eq = part.indexOf('=');
            m.put(part.substring(0, eq), part.substring(eq + 1));
        }
        String key = m.getOrDefault("pendingKey", "");
        return new GuardState(Integer.parseInt(m.get("edits")), Long.parseLong(m.get("lastEditStep")),
                Boolean.parseBoolean(m.get("escalated")), key.isEmpty() ? null : key, Long.parseLong(m.get("pendingStep")),
                Long.parseLong(m.get("lastAppliedStep")), Boolean.parseBoolean(m.get("stalled")),
                Boolean.parseBoolean(m.get("exhausted")), Boolean.parseBoolean(m.get("harmful")));
    }
}
