package dev.curvewatch.service.internal;

import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;

/**
 * Where on the factors topic each layer's latest complete checkpoint starts, so that an instance
 * that gains a run (at start-up, or from a killed instance) reads that checkpoint again instead of
 * waiting for the next one: it holds chunks of owned runs only. A checkpoint of a layer is its
 * chunks followed by its manifest (all in one worker transaction, every chunk rewritten per
 * version), so it starts at the first record of its key after the previous manifest.
 *
 * <p>A rewind seeks a partition back and replays it up to where it was: within that window only
 * the gained runs' records are taken again, the others were already handled. Pure; the ingest
 * thread's.
 */
final class FactorRewind {
    private record Start(int partition, String runLayer, long latest, long current) {
    }

    /** By partition and run/layer: a layer's records normally share a partition, but a stray one elsewhere must not hide them. */
    private final Map<String, Start> starts = new HashMap<>();
    private final Map<Integer, Long> replayUntil = new HashMap<>();
    private final Map<Integer, Set<String>> replayRuns = new HashMap<>();

    /**
     * A record of the factors topic read for the first time (not during a replay). A manifest with
     * no chunk of its key since the previous one (a refused or repeated manifest) starts nothing:
     * the latest checkpoint stays where it was.
     */
    void seen(int partition, long offset, String runLayer, boolean manifest) {
        String key = partition + "|" + runLayer;
        Start s = starts.getOrDefault(key, new Start(partition, runLayer, -1, -1));
        if (manifest) {
            starts.put(key, s.current >= 0 ? new Start(partition, runLayer, s.current, -1) : s);
        } else if (s.current < 0) {
            starts.put(key, new Start(partition, runLayer, s.latest, offset));
        }
    }

    /**
     * Seeks for a gain: per partition, the earliest start of a latest complete checkpoint among
     * the gained layers; empty when none of them has one.
     */
    Map<Integer, Long> seeks(Predicate<String> gainedRunLayer) {
        Map<Integer, Long> out = new HashMap<>();
        starts.values().forEach(s -> {
            if (s.latest >= 0 && gainedRunLayer.test(s.runLayer)) {
                out.merge(s.partition, s.latest, Math::min);
            }
        });
        return out;
    }

    /** A partition was sought back: up to {@code until} (exclusive) only the records of {@code runs} are taken again. */
    void replay(int partition, long until, Set<String> runs) {
        replayUntil.merge(partition, until, Math::max);
        replayRuns.computeIfAbsent(partition, p -> new HashSet<>()).addAll(runs);
    }

    /** Whether a record is inside a replay window (then it was seen before). */
    boolean replaying(int partition, long offset) {
        Long until = replayUntil.get(partition);
        if (until == null) {
            return false;
        }
        if (offset >= until) {
            replayUntil.remove(partition);
            replayRuns.remove(partition);
            return false;
        }
        return true;
    }

    /** Whether a record lies inside a replay window (read once already), without closing the window. */
    boolean inWindow(int partition, long offset) {
        Long until = replayUntil.get(partition);
        return until != null && offset < until;
    }

    /** Inside a replay window: whether a record of this run is taken again. */
    boolean replayed(int partition, String runId) {
        Set<String> runs = replayRuns.get(partition);
        return runs != null && runs.contains(runId);
    }

    /** A run forgotten for runs.max. */
    void forgetRun(String runId) {
        String prefix = runId + "/";
        starts.values().removeIf(s -> s.runLayer.startsWith(prefix));
    }
}
