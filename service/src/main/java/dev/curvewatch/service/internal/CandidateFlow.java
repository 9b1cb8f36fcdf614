package dev.curvewatch.service.internal;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;

/**
 * A layer's EditCandidates on their way: the ones out (one is sent at a time; at most
 * {@link LayerState#MAX_OUTSTANDING} kept), their pacing ({@link CandidatePacer}), whether a
 * refresh still owes the trainer a candidate, and the counts the status shows. Not thread-safe:
 * its {@link LayerState} guards it with its lock.
 */
final class CandidateFlow {
    private final LinkedHashMap<String, PendingCandidate> outstanding = new LinkedHashMap<>();
    /** Candidates that timed out, kept so that a late answer (a slow or loaded trainer) is still used, not refused. */
    private final LinkedHashMap<String, PendingCandidate> expired = new LinkedHashMap<>();
    private final CandidatePacer pacer;
    /** Which bases the trainer holds (EditCandidate v4): heard about on answers and declines, dropped on any doubt. */
    final BasisReferences references = new BasisReferences();
    long sent;
    int timeouts;
    int declined;
    /** Why the latest refresh sent none, or null. */
    String paced;
    /** A refresh had a candidate to send but one was still out: send one for the newest bases once that one ends. */
    private boolean owed;

    CandidateFlow(CandidatePacer.Settings settings) {
        this.pacer = new CandidatePacer(settings);
    }

    /** forced: an operator asked for this refresh (POST refresh); see {@link CandidatePacer#refreshed(long, double, boolean)}. */
    CandidatePacer.Decision decide(long step, double drift, boolean forced) {
        CandidatePacer.Decision d = pacer.refreshed(step, drift, forced);
        if (!outstanding.isEmpty()) {
            // one candidate at a time per layer: a newer one would supersede the answer the trainer is computing now
            owed = d.send();
            d = new CandidatePacer.Decision(false, "candidate " + outstanding.keySet().iterator().next() + " is still out");
        } else {
            owed = false;
        }
        paced = d.send() ? null : d.why();
        return d;
    }

    void sent(PendingCandidate c) {
        outstanding.put(c.id(), c);
        sent++;
        pacer.sent(c.step());
        while (outstanding.size() > LayerState.MAX_OUTSTANDING) {
            Iterator<String> it = outstanding.keySet().iterator();
            it.next();
            it.remove();
        }
    }

    /** Whether a candidate is owed now (none out); clears the debt when it is. */
    boolean takeOwed() {
        boolean now = owed && outstanding.isEmpty();
        owed = owed && !now;
        return now;
    }

    /** The candidate sent last and still out, or null. */
    PendingCandidate newest() {
        PendingCandidate last = null;
        for (PendingCandidate c : outstanding.values()) {
            last = c;
        }
        return last;
    }

    /**
     * A candidate another instance sent for this layer and had out when this one took the run
     * over: its answer is calibrated here. Not counted as sent by this instance; paced from its step.
     */
    void restored(PendingCandidate c) {
        if (outstanding.containsKey(c.id())) {
            return;
        }
        outstanding.put(c.id(), c);
        pacer.sent(c.step());
    }

    boolean awaiting() {
        return !outstanding.isEmpty();
    }

    PendingCandidate outstanding(String id) {
        return outstanding.get(id);
    }

    /** A candidate an answer may be for: one out, or one that timed out lately (at most {@link LayerState#MAX_OUTSTANDING} kept). */
    PendingCandidate answerable(String id) {
        PendingCandidate c = outstanding.get(id);
        return c != null ? c : expired.get(id);
    }

    /** Takes a candidate out of the outstanding ones (it will get no usable answer); false when it was not out. */
    boolean remove(String id) {
        references.lost(id);
        expired.remove(id);
        return outstanding.remove(id) != null;
    }

    /** The candidate was answered: it and every older candidate are done, and the back-off eases. */
    void answered(PendingCandidate c) {
        references.heard(c.id());
        outstanding.values().removeIf(o -> o.factorVersion() <= c.factorVersion());
        expired.values().removeIf(o -> o.factorVersion() <= c.factorVersion());
        pacer.answered();
    }

    /** Declined by the trainer: no longer out, and the layer backs off. False when it was not out. */
    boolean declined(PendingCandidate c) {
        references.heard(c.id()); // a trainer declines only a candidate whose bases it validated
        expired.remove(c.id());
        if (outstanding.remove(c.id()) == null) {
            return false;
        }
        declined++;
        pacer.declinedOrTimedOut();
        return true;
    }

    /** Removes candidates older than the timeout; returns them. */
    List<PendingCandidate> expire(long nowMs, long timeoutMs) {
        List<PendingCandidate> out = new ArrayList<>();
        outstanding.values().removeIf(c -> {
            if (nowMs - c.sentMs() > timeoutMs) {
                out.add(c);
                return true;
            }
            return false;
        });
        if (!out.isEmpty()) {
            timeouts += out.size();
            pacer.declinedOrTimedOut();
            for (PendingCandidate c : out) {
                references.lost(c.id());
                expired.put(c.id(), c);
            }
            while (expired.size() > LayerState.MAX_OUTSTANDING) {
                Iterator<String> it = expired.keySet().iterator();
                it.next();
                it.remove();
            }
        }
        return out;
    }

    int backoff() {
        return pacer.backoff();
    }
}
