package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.SnapshotStatus;
import dev.curvewatch.service.DeadLetterSummary;
import dev.curvewatch.service.LayerStatus;
import dev.curvewatch.service.ServiceState;
import dev.curvewatch.service.SignalPoint;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The service's in-memory state: runs and their layers, signal history, alerts (raw and
 * de-duplicated), snapshots and answered idempotency keys. Every collection is bounded: per
 * layer by {@link LayerState}, series by {@link SignalHistory}, alerts and snapshots by the
 * configured history sizes, runs by {@code maxRuns}: whenever a run is added beyond it (by a
 * registration or by factors of a run not registered yet) the least recently active other run
 * is forgotten with everything held for it: its layers, signal history and snapshot list here,
 * and, through the {@link #onForget} listeners, what other parts hold for it (alert-rule state,
 * factor chunks, half-assembled weights). Answered idempotency keys are kept (bounded on their
 * own), so a forgotten run that comes back is not edited twice for the same key.
 */
public final class Registry implements ServiceState {
    /** A run: its registration (null while only seen in factors) and layers. */
    public static final class Run {
        final String id;
        volatile RunInfo info;
        final Map<String, LayerState> layers = new ConcurrentSkipListMap<>();
        /** Dead letters of the run whose key names no layer it holds (probe results, edit requests, ...). */
        final DeadLetterStats deadLetters = new DeadLetterStats();
        volatile long lastActivityMs;

        Run(String id) {
            this.id = id;
        }

        public RunInfo info() {
            return info;
        }

        public Map<String, LayerState> layers() {
            return layers;
        }

        /**
         * POST refresh: every layer refreshed at its next chance, that refresh's candidate not step-paced
         * ({@link LayerState#forceRefresh}). Returns the layers' names.
         */
        public List<String> forceRefresh() {
            return layers.values().stream().map(l -> {
                l.forceRefresh();
                return l.layer();
            }).toList();
        }

        public String id() {
            return id;
        }

        public DeadLetterSummary deadLetters() {
            return deadLetters.summary();
        }
    }

    private final Map<String, Run> runs = new ConcurrentHashMap<>();
    private volatile RunOwnership ownership = RunOwnership.everything();
    private final SignalHistory history;
    private final int alertHistory;
    private final int snapshotHistory;
    private final int maxRuns;
    private final LayerState.Pacing pacing;
    private final ArrayDeque<Alert> rawAlerts = new ArrayDeque<>();
    private final LinkedHashMap<String, Alert> alerts = new LinkedHashMap<>(16, 0.75f, false);
    private final Map<String, ArrayDeque<SnapshotEvent>> snapshots = new LinkedHashMap<>();
    private final Map<String, SnapshotEvent> snapshotsById = new LinkedHashMap<>();
    private final LinkedHashSet<String> answeredKeys = new LinkedHashSet<>();
    private final AtomicLong deadLetters = new AtomicLong();
    private final java.util.concurrent.CountDownLatch caughtUp = new java.util.concurrent.CountDownLatch(1);
    /** Guards adding and forgetting runs against the history and alert state of a run being forgotten. */
    private final Object runsLock = new Object();
    private final List<java.util.function.Consumer<String>> forgetListeners = new java.util.concurrent.CopyOnWriteArrayList<>();

    /** A registry whose layers are not paced ({@link LayerState.Pacing#NONE}). */
    public Registry(SignalHistory history, int alertHistory, int snapshotHistory, int maxRuns) {
        this(history, alertHistory, snapshotHistory, maxRuns, LayerState.Pacing.NONE);
    }

    public Registry(SignalHistory history, int alertHistory, int snapshotHistory, int maxRuns, LayerState.Pacing pacing) {
        this.pacing = pacing;
        this.history = history;
        this.alertHistory = alertHistory;
        this.snapshotHistory = snapshotHistory;
        this.maxRuns = maxRuns;
    }

    /** Which runs this instance owns ({@link RunOwnership}); every run until the service sets the group's. */
    public void ownership(RunOwnership o) {
        this.ownership = o;
    }

    /** Grows whenever the runs this instance owns may have changed. */
    public long ownershipGeneration() {
        return ownership.generation();
    }

    /** Whether this instance owns the run: refreshes it, calibrates it, publishes its signals and alerts, serves its edits. */
    public boolean owns(String runId) {
        return ownership.owns(runId);
    }

    public SignalHistory history() {
        return history;
    }

    // ---- runs and layers -------------------------------------------------------------------

    /**
     * Called with the id of every run forgotten to stay within {@code maxRuns}, on the thread that
     * added the run that made room necessary (the ingest thread), under the registry's run lock.
     */
    public void onForget(java.util.function.Consumer<String> listener) {
        forgetListeners.add(listener);
    }

    /** Registers (or updates) a run; returns runs forgotten to stay within the bound. */
    public List<String> register(RunInfo info, long nowMs) {
        synchronized (runsLock) {
            Run r = runs.computeIfAbsent(info.getRunId(), Run::new);
            r.info = info;
            r.lastActivityMs = nowMs;
            for (LayerInfo l : info.getLayers()) {
                r.layers.computeIfAbsent(l.getName(), n -> new LayerState(info.getRunId(), n, pacing)).register(l);
            }
            return evict(info.getRunId());
        }
    }

    /**
     * The layer's state, created (with its run, for a run seen only in factors so far) if needed;
     * a new run beyond {@code maxRuns} makes the least recently active other run forgotten.
     */
    public LayerState layerState(String runId, String layer, long nowMs) {
        synchronized (runsLock) {
            Run r = runs.computeIfAbsent(runId, Run::new);
            r.lastActivityMs = nowMs;
            LayerState l = r.layers.computeIfAbsent(layer, n -> new LayerState(runId, n, pacing));
            evict(runId);
            return l;
        }
    }

    /**
     * The layer's state if its run is held, or can be without forgetting another (the replay of
     * the service's own signals at start: it must not bring back runs forgotten for the bound).
     */
    public Optional<LayerState> layerStateIfRoom(String runId, String layer, long nowMs) {
        synchronized (runsLock) {
            return runs.containsKey(runId) || runs.size() < maxRuns ? Optional.of(layerState(runId, layer, nowMs)) : Optional.empty();
        }
    }

    /**
     * Runs {@code action} if the run is held, excluding a concurrent forget of it (a signal of a
     * refresh that outlived its run must not bring back history or alert state); returns whether
     * it ran.
     */
    public boolean ifHeld(String runId, Runnable action) {
        synchronized (runsLock) {
            if (!runs.containsKey(runId)) {
                return false;
            }
            action.run();
            return true;
        }
    }

    public Optional<Run> run(String runId) {
        return Optional.ofNullable(runs.get(runId));
    }

    public Optional<LayerState> existing(String runId, String layer) {
        Run r = runs.get(runId);
        return r == null ? Optional.empty() : Optional.ofNullable(r.layers.get(layer));
    }

    public List<Run> allRuns() {
        List<Run> out = new ArrayList<>(runs.values());
        out.sort(Comparator.comparing(Run::id));
        return out;
    }

    private List<String> evict(String keep) {
        List<String> gone = new ArrayList<>();
        while (runs.size() > maxRuns) {
            Run oldest = runs.values().stream().filter(r -> !r.id.equals(keep))
                    .min(Comparator.comparingLong(r -> r.lastActivityMs)).orElse(null);
            if (oldest == null) {
                break;
            }
            runs.remove(oldest.id);
            history.forgetRun(oldest.id);
            forgetSnapshots(oldest.id);
            for (var listener : forgetListeners) {
                listener.accept(oldest.id);
            }
            gone.add(oldest.id);
        }
        return gone;
    }

    private synchronized void forgetSnapshots(String runId) {
        ArrayDeque<SnapshotEvent> list = snapshots.remove(runId);
        if (list != null) {
            list.forEach(e -> snapshotsById.remove(e.getSnapshotId()));
        }
    }

    /** Whether a run id was forgotten (or never seen) while over the bound: its factors are not worth holding. */
    public boolean tracksRoomFor(String runId) {
        return runs.containsKey(runId) || runs.size() < maxRuns;
    }

    // ---- alerts ----------------------------------------------------------------------------

    public synchronized void rawAlert(Alert a) {
        rawAlerts.addFirst(a);
        while (rawAlerts.size() > alertHistory) {
            rawAlerts.removeLast();
        }
    }

    /** An alert of the de-duplicated topic (null value: a tombstone of that fingerprint). */
    public synchronized void alert(String fingerprint, Alert a) {
        alerts.remove(fingerprint);
        if (a != null) {
            alerts.put(fingerprint, a);
        }
        while (alerts.size() > alertHistory) {
            alerts.remove(alerts.keySet().iterator().next());
        }
    }

    public synchronized int firingAlerts(String runId) {
        return (int) alerts.values().stream().filter(a -> a.getRunId().equals(runId) && a.getStatus() == AlertStatus.FIRING).count();
    }

    // ---- snapshots -------------------------------------------------------------------------

    /**
     * A SnapshotEvent read back (or just published): returns false if it was already known. The
     * idempotency key of a WRITTEN one counts as answered in any case (a FAILED one does not: the
     * same request may be served once the layer is ready); it is listed only while its run is held.
     */
    public synchronized boolean snapshot(SnapshotEvent e) {
        if (e.getStatus() == SnapshotStatus.WRITTEN) {
            answeredKeys.add(e.getRunId() + "|" + e.getIdempotencyKey());
            while (answeredKeys.size() > 100_000) {
                answeredKeys.remove(answeredKeys.iterator().next());
            }
        }
        if (!runs.containsKey(e.getRunId())) {
            return false;
        }
        if (snapshotsById.containsKey(e.getSnapshotId())) {
            SnapshotEvent old = snapshotsById.get(e.getSnapshotId());
            if (old.getSha256().equals(e.getSha256()) && old.getStatus() == e.getStatus() && old.getReason().equals(e.getReason())) {
                return false;
            }
            snapshots.getOrDefault(e.getRunId(), new ArrayDeque<>()).removeIf(x -> x.getSnapshotId().equals(e.getSnapshotId()));
        }
        snapshotsById.put(e.getSnapshotId(), e);
        ArrayDeque<SnapshotEvent> list = snapshots.computeIfAbsent(e.getRunId(), r -> new ArrayDeque<>());
        list.addFirst(e);
        while (list.size() > snapshotHistory) {
            snapshotsById.remove(list.removeLast().getSnapshotId());
        }
        return true;
    }

    public synchronized boolean answered(String runId, String idempotencyKey) {
        return answeredKeys.contains(runId + "|" + idempotencyKey);
    }

    public synchronized Optional<SnapshotEvent> snapshotById(String id) {
        return Optional.ofNullable(snapshotsById.get(id));
    }

    /**
     * A dead letter whose original key names this run (and layer): counted against the layer when
     * the run holds it, else against the run. False when the run is not held (nothing is created
     * for it: dead letters never add runs or layers).
     */
    public boolean deadLetter(String runId, String layer, String topic, String code, String reason, String component, long failedMs) {
        Run r = runs.get(runId);
        if (r == null) {
            return false;
        }
        LayerState l = layer == null ? null : r.layers.get(layer);
        if (l != null) {
            l.deadLetter(topic, code, reason, component, failedMs);
        } else {
            r.deadLetters.add(topic, code, reason, component, failedMs);
        }
        return true;
    }

    public void countDeadLetter() {
        deadLetters.incrementAndGet();
    }

    public void caughtUp() {
        caughtUp.countDown();
    }

    /** Waits up to {@code timeout} for the start-up catch-up; returns whether it is done. */
    public boolean awaitCaughtUp(java.time.Duration timeout) throws InterruptedException {
        return caughtUp.await(timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
    }

    // ---- ServiceState ----------------------------------------------------------------------

    @Override
    public boolean isCaughtUp() {
        return caughtUp.getCount() == 0;
    }

    @Override
    public List<String> runIds() {
        return runs.keySet().stream().sorted().toList();
    }

    @Override
    public List<LayerStatus> layers(String runId) {
        Run r = runs.get(runId);
        return r == null ? List.of() : r.layers.values().stream().map(LayerState::status).toList();
    }

    @Override
    public Optional<LayerStatus> layer(String runId, String layer) {
        return existing(runId, layer).map(LayerState::status);
    }

    @Override
    public List<SignalPoint> signal(String runId, String layer, String name) {
        return history.points(runId, layer, name);
    }

    @Override
    public OptionalDouble latest(String runId, String layer, String name) {
        return history.latest(runId, layer, name);
    }

    @Override
    public List<ExampleScore> topScores(String runId, String layer, ScoreKind kind) {
        return existing(runId, layer).map(l -> kind == ScoreKind.LOSS ? l.topLoss() : kind == ScoreKind.EXACT ? l.topExact()
                : kind == ScoreKind.PEAK ? l.topPeak() : List.<ExampleScore>of()).orElse(List.of());
    }

    @Override
    public synchronized List<SnapshotEvent> snapshots(String runId) {
        ArrayDeque<SnapshotEvent> list = snapshots.get(runId);
        return list == null ? List.of() : List.copyOf(list);
    }

    @Override
    public synchronized List<Alert> rawAlerts() {
        return List.copyOf(rawAlerts);
    }

    @Override
    public synchronized List<Alert> alerts() {
        List<Alert> out = new ArrayList<>(alerts.values());
        out.sort(Comparator.comparingLong(Alert::getLastSeenMs).reversed());
        return out;
    }

    @Override
    public long deadLetters() {
        return deadLetters.get();
    }
}
