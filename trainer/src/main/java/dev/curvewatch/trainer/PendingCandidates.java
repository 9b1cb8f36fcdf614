package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.trainer.CandidateValidator.Prepared;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Checked candidates waiting for an answer: the newest per layer (factor version, then step, then
 * creation time), the layers in the order they became pending. An older one is skipped.
 */
final class PendingCandidates {
    /** Told of each candidate that will not be answered because a newer one of its layer is pending. */
    @FunctionalInterface
    interface Skips {
        void skipped(EditCandidate candidate, String why);
    }

    private final LinkedHashMap<String, Prepared> byLayer = new LinkedHashMap<>();

    void add(Prepared p, Skips skips) {
        EditCandidate c = p.candidate();
        Prepared old = byLayer.get(c.getLayer());
        if (old != null) {
            if (newer(old.candidate(), c)) {
                skips.skipped(c, "candidate " + old.candidate().getCandidateId() + " of the same layer is newer");
                return;
            }
            skips.skipped(old.candidate(), "superseded by candidate " + c.getCandidateId() + " (factor version "
                    + c.getFactorVersion() + ")");
            byLayer.remove(c.getLayer()); // re-inserted at the end: the layer waits its turn again
        }
        byLayer.put(c.getLayer(), p);
    }

    boolean isEmpty() {
        return byLayer.isEmpty();
    }

    int size() {
        return byLayer.size();
    }

    /** Takes out the candidate of the layer that has waited longest. */
    Prepared next() {
        Iterator<Map.Entry<String, Prepared>> it = byLayer.entrySet().iterator();
        Prepared p = it.next().getValue();
        it.remove();
        return p;
    }

    /** Whether {@code a} is strictly newer than {@code b} (factor version, then step, then creation time). */
    static boolean newer(EditCandidate a, EditCandidate b) {
        if (a.getFactorVersion() != b.getFactorVersion()) {
            return a.getFactorVersion() > b.getFactorVersion();
        }
        if (a.getStep() != b.getStep()) {
            return a.getStep() > b.getStep();
        }
        return a.getCreatedMs() > b.getCreatedMs();
    }
}
