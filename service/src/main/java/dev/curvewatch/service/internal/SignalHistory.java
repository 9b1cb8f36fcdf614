package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Signal;
import dev.curvewatch.service.SignalPoint;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalDouble;
import java.util.TreeMap;

/**
 * Bounded history of every signal series (run, layer, name): a ring of the newest
 * {@code pointsPerSeries} points each, so memory does not grow with the length of a run.
 * Thread-safe.
 */
public final class SignalHistory {
    /** A series' identity; layer is null for run-level signals. */
    public record Series(String runId, String layer, String name) {
    }

    private static final Comparator<Series> ORDER = Comparator.comparing(Series::runId)
            .thenComparing(s -> s.layer() == null ? "" : s.layer()).thenComparing(Series::name);

    private final int pointsPerSeries;
    private final Map<Series, ArrayDeque<SignalPoint>> series = new TreeMap<>(ORDER);

    public SignalHistory(int pointsPerSeries) {
        this.pointsPerSeries = pointsPerSeries;
    }

    public synchronized void add(Signal s) {
        ArrayDeque<SignalPoint> ring = series.computeIfAbsent(new Series(s.getRunId(), s.getLayer(), s.getName()), k -> new ArrayDeque<>());
        ring.addLast(new SignalPoint(s.getStep(), s.getValue(), s.getFactorVersion(), s.getTimestampMs(), s.getAttributes()));
        while (ring.size() > pointsPerSeries) {
            ring.removeFirst();
        }
    }

    /** Oldest first. */
    public synchronized List<SignalPoint> points(String runId, String layer, String name) {
        ArrayDeque<SignalPoint> ring = series.get(new Series(runId, layer, name));
        return ring == null ? List.of() : List.copyOf(ring);
    }

    public synchronized OptionalDouble latest(String runId, String layer, String name) {
        ArrayDeque<SignalPoint> ring = series.get(new Series(runId, layer, name));
        return ring == null || ring.isEmpty() ? OptionalDouble.empty() : OptionalDouble.of(ring.peekLast().value());
    }

    /**
     * The series of a run matching the filters (null = any), each with at most {@code limit} of
     * its newest points with step &gt;= {@code sinceStep}, oldest first.
     */
    public synchronized Map<Series, List<SignalPoint>> query(String runId, String layer, String name, long sinceStep, int limit) {
        Map<Series, List<SignalPoint>> out = new TreeMap<>(ORDER);
        for (Map.Entry<Series, ArrayDeque<SignalPoint>> e : series.entrySet()) {
            Series s = e.getKey();
            if (!s.runId().equals(runId) || (layer != null && !Objects.equals(layer, s.layer())) || (name != null && !name.equals(s.name()))) {
                continue;
            }
            List<SignalPoint> pts = new ArrayList<>();
            for (SignalPoint p : e.getValue()) {
                if (p.step() >= sinceStep) {
                    pts.add(p);
                }
            }
            if (pts.size() > limit) {
                pts = pts.subList(pts.size() - limit, pts.size());
            }
            out.put(s, List.copyOf(pts));
        }
        return out;
    }

    /** Drops every series of a run. */
    public synchronized void forgetRun(String runId) {
        series.keySet().removeIf(s -> s.runId().equals(runId));
    }
}
