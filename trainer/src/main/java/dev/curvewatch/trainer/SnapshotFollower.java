package dev.curvewatch.trainer;

import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.SnapshotStatus;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.InvalidRecordException;
import org.apache.kafka.clients.consumer.ConsumerRecord;

import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * Closes the loop through Kafka (DESIGN §4): reads this run's {@link SnapshotEvent}s from topic
 * snapshots (from the moment training starts), verifies each snapshot file with a
 * {@link SnapshotStore} and, when {@code apply} is on, loads the edited weights into the model
 * between steps so training continues from them. Without {@code apply} a good snapshot is only
 * verified and logged. Any failure is a logged message and a counter; training goes on.
 *
 * <p>A snapshot is loaded at most once: the service may publish a SnapshotEvent again (a retry
 * after an ambiguous send failure, two service instances answering one edit request), and loading
 * it again would throw away the training done since. So the follower remembers the snapshots it
 * applied (or verified) by id, with their sha256 ({@link #REMEMBERED_SNAPSHOTS} of them), and
 * counts a repeat as a duplicate without reading its file; and it refuses ({@code stale}) a
 * snapshot edited from weights older (a smaller step) than those of the last snapshot applied to
 * any of the same layers. Every event is taken out of the queue before it is handled, so one whose
 * loading or observer throws is not handled again at the next step.
 *
 * <p>The optimizer state (Adam moments) is kept: training continues from the edited weights with
 * the moments of the weights they replace.
 *
 * <p>Every snapshot handled is also reported to the live guard ({@link #reportingTo}) as a
 * {@link GuardDecision} on topic guard-decisions: APPLIED (after which step, so the service re-arms its
 * alert baselines on the edited model), REFUSED (with the reason), or NOT_APPLIED when the run only
 * verifies snapshots, so the guard stops editing instead of waiting. Duplicates and other runs'
 * snapshots are not reported.
 */
public final class SnapshotFollower implements AutoCloseable {
    /** Snapshot ids remembered as handled (the oldest forgotten first). */
    public static final int REMEMBERED_SNAPSHOTS = 10_000;

    /** The model side: the watched layers and how to load new weights into one. */
    public interface Target {
        Optional<LayerShape> layer(String name);

        /** Replaces the layer's weight (d_out x d_in) and, when {@code bias} is not null, its bias. */
        void load(String layer, float[] weight, float[] bias);
    }

    /** What happened to snapshots, on the training thread. */
    public interface Events {
        default void snapshotApplied(Applied applied) {
        }

        default void snapshotRefused(String snapshotId, String reason, String message) {
        }
    }

    /** A snapshot loaded into the model after step {@code atStep}. */
    public record Applied(String snapshotId, long atStep, long snapshotStep, List<String> layers, Map<String, Double> rhos,
                          String sha256) {
        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("snapshot_id", snapshotId);
            m.put("applied_after_step", atStep);
            m.put("snapshot_step", snapshotStep);
            m.put("layers", layers);
            m.put("rhos", rhos);
            m.put("sha256", sha256);
            return m;
        }
    }

    private final String runId;
    private final SnapshotStore store;
    private final Target target;
    private final boolean apply;
    private final PrintStream log;
    private final Events events;
    private final AvroDeserializer<SnapshotEvent> decoder = new AvroDeserializer<>(SnapshotEvent.class);
    private final ArrayDeque<SnapshotEvent> pending = new ArrayDeque<>();
    private final List<Applied> applied = new ArrayList<>();
    // snapshot id -> sha256 of every snapshot applied or verified, insertion order (bounded)
    private final LinkedHashMap<String, String> handled = new LinkedHashMap<>();
    // layer -> step of the weights the last snapshot applied to it was edited from
    private final Map<String, Long> appliedStep = new LinkedHashMap<>();
    private final Map<String, Long> refusalReasons = new TreeMap<>();
    private TopicTail tail;
    private Consumer<GuardDecision> reports = d -> { };
    private long refused;
    private long verifiedOnly;
    private long otherRuns;
    private long duplicates;
    private long loadFailures;
    private long observerFailures;
    private long failedRequests;

    public SnapshotFollower(String runId, SnapshotStore store, Target target, boolean apply, PrintStream log,
                            Events events) {
        this.runId = runId;
        this.store = store;
        this.target = target;
        this.apply = apply;
        this.log = log;
        this.events = events == null ? new Events() { } : events;
    }

    /** Reports what happens to each snapshot to the live guard (e.g. a publisher to guard-decisions); a failure is logged. */
    public SnapshotFollower reportingTo(Consumer<GuardDecision> sink) {
        this.reports = sink;
        return this;
    }

    private void report(SnapshotEvent e, String id, GuardAction action, long step, String reason) {
        List<LayerRho> layers = e == null ? List.of() : e.getLayers();
        try {
            GuardDecision d = GuardDecision.newBuilder().setId(UUID.randomUUID().toString()).setRunId(runId)
                    .setLayer(layers.size() == 1 ? layers.get(0).getLayer() : null).setStep(Math.max(0, step)).setAction(action)
                    .setReason(reason.length() < ContractChecks.MAX_GUARD_REASON ? reason : reason.substring(0, ContractChecks.MAX_GUARD_REASON - 1))
                    .setSource("trainer:" + runId).setSnapshotId(validId(id)).setIdempotencyKey(e == null ? null : validId(e.getIdempotencyKey()))
                    .setLayers(new ArrayList<>(layers)).setCreatedMs(System.currentTimeMillis()).build();
            ContractChecks.checkGuardDecision(d);
            reports.accept(d);
        } catch (RuntimeException ex) {
            log.println("snapshots: could not report " + action + " of " + id + " to the guard: " + ex);
        }
    }

    private static String validId(String s) {
        return s != null && ContractChecks.ID.matcher(s).matches() ? s : null;
    }

    /** Starts reading {@code topics.snapshots()} at its current end; a failure is logged and leaves it idle. */
    public boolean tail(String bootstrap, CurvewatchTopics topics) {
        try {
            tail = TopicTail.open(bootstrap, topics.snapshots(), Duration.ofSeconds(30));
            log.println("snapshots: following " + topics.snapshots() + " for run " + runId + " (store " + store.root()
                    + (apply ? ", applying edited weights)" : ", verify only: run with --apply-snapshots to load them)"));
            return true;
        } catch (RuntimeException e) {
            log.println("snapshots: cannot read " + topics.snapshots() + " (" + e.getMessage() + "); not following snapshots");
            return false;
        }
    }

    /** Between steps (after step {@code step}): takes new events, never waits, and handles them in order. */
    public List<Applied> poll(long step) {
        if (tail != null) {
            try {
                for (ConsumerRecord<String, byte[]> r : tail.poll()) {
                    offer(r.key(), r.value());
                }
            } catch (RuntimeException e) {
                log.println("snapshots: reading " + tail.topic() + " failed: " + e + " (training goes on)");
            }
        }
        return handlePending(step);
    }

    /** One record of topic snapshots (key = run id). */
    public void offer(String key, byte[] value) {
        if (key != null && !key.equals(runId)) {
            otherRuns++;
            return;
        }
        SnapshotEvent e;
        try {
            e = decoder.decode(value);
        } catch (InvalidRecordException ex) {
            refuse("?", "format", "undecodable snapshot event: " + ex.getMessage());
            return;
        } catch (RuntimeException ex) {
            refuse("?", "format", "undecodable snapshot event: " + ex);
            return;
        }
        if (key == null && !runId.equals(e.getRunId())) {
            otherRuns++;
            return;
        }
        pending.add(e);
    }

    /** Verifies (and applies) every pending event, each taken out of the queue first; returns the ones applied. */
    public List<Applied> handlePending(long step) {
        List<Applied> done = new ArrayList<>();
        SnapshotEvent e;
        while ((e = pending.poll()) != null) {
            handle(e, step).ifPresent(done::add);
        }
        return done;
    }

    private Optional<Applied> handle(SnapshotEvent e, long step) {
        String id = e.getSnapshotId();
        if (e.getStatus() == SnapshotStatus.FAILED) {
            // the service could not serve the edit request: there is no file, only its reason (SnapshotEvent v2)
            failedRequests++;
            log.println("snapshots: edit request " + e.getIdempotencyKey() + " failed at the service (" + id + "): " + e.getReason()
                    + "; nothing to load");
            return Optional.empty();
        }
        String sha = e.getSha256() == null ? null : e.getSha256().toLowerCase(Locale.ROOT);
        String before = handled.get(id);
        if (before != null) {
            duplicates++;
            log.println("snapshots: " + id + " was " + (apply ? "applied" : "verified") + " already (sha256 " + before
                    + (before.equals(sha) ? ")" : "; this event says " + sha + ")") + "; not loaded again");
            return Optional.empty();
        }
        SnapshotStore.Verified v;
        try {
            v = store.verify(e, runId, target::layer);
        } catch (SnapshotStore.Refusal r) {
            refuse(id, r.reason(), r.getMessage());
            report(e, id, GuardAction.REFUSED, step, r.reason() + ": " + r.getMessage());
            return Optional.empty();
        } catch (RuntimeException r) {
            refuse(id, "format", r.toString());
            report(e, id, GuardAction.REFUSED, step, "format: " + r);
            return Optional.empty();
        }
        Map<String, Double> rhos = new LinkedHashMap<>();
        for (LayerRho lr : e.getLayers()) {
            rhos.put(lr.getLayer(), lr.getRho());
        }
        if (!apply) {
            remember(id, sha);
            verifiedOnly++;
            log.println("snapshots: verified " + id + " (layers " + v.weights().keySet()
                    + ", edited from step " + e.getStep() + "), not applied: the run was started without --apply-snapshots");
            report(e, id, GuardAction.NOT_APPLIED, step, "verified, not applied: this run only verifies snapshots "
                    + "(started without --apply-snapshots)");
            return Optional.empty();
        }
        for (String layer : v.weights().keySet()) {
            Long last = appliedStep.get(layer);
            if (last != null && e.getStep() < last) {
                refuse(id, "stale", "snapshot " + id + " edits " + layer + " as of step " + e.getStep()
                        + ", older than step " + last + " of the snapshot last applied to it; loading it would undo that");
                report(e, id, GuardAction.REFUSED, step, "stale: edits " + layer + " as of step " + e.getStep()
                        + ", older than the snapshot last applied to it (step " + last + ")");
                return Optional.empty();
            }
        }
        remember(id, sha); // before loading: a load that fails half way is not retried with the same file
        List<String> loaded = new ArrayList<>();
        for (Map.Entry<String, float[]> w : v.weights().entrySet()) {
            try {
                target.load(w.getKey(), w.getValue(), v.biases().get(w.getKey()));
            } catch (RuntimeException ex) {
                loadFailures++;
                log.println("snapshots: loading " + w.getKey() + " of " + id + " failed: " + ex + "; layers loaded before it: "
                        + loaded + " (training goes on with them; the snapshot is not retried)");
                report(e, id, GuardAction.REFUSED, step, "loading " + w.getKey() + " failed: " + ex);
                return Optional.empty();
            }
            loaded.add(w.getKey());
            appliedStep.put(w.getKey(), e.getStep());
        }
        Applied a = new Applied(id, step, e.getStep(), List.copyOf(loaded), rhos, sha);
        applied.add(a);
        log.println("snapshots: applied " + id + " after step " + step + ": layers " + a.layers()
                + " rho " + rhos + " (weights edited from step " + e.getStep() + "); training continues from them");
        report(e, id, GuardAction.APPLIED, step, "loaded after step " + step + " (weights edited from step " + e.getStep()
                + "): training continues from the edited weights");
        notify("snapshotApplied(" + id + ")", () -> events.snapshotApplied(a));
        return Optional.of(a);
    }

    private void remember(String id, String sha) {
        handled.put(id, sha);
        if (handled.size() > REMEMBERED_SNAPSHOTS) {
            Iterator<String> it = handled.keySet().iterator();
            it.next();
            it.remove();
        }
    }

    /** Runs an observer callback; its failure is logged and counted, never the follower's. */
    private void notify(String what, Runnable callback) {
        try {
            callback.run();
        } catch (RuntimeException ex) {
            observerFailures++;
            log.println("snapshots: the observer's " + what + " threw " + ex + " (ignored; training goes on)");
        }
    }

    private void refuse(String id, String reason, String message) {
        refused++;
        refusalReasons.merge(reason, 1L, Long::sum);
        log.println("snapshots: refused " + id + ": " + message);
        notify("snapshotRefused(" + id + ")", () -> events.snapshotRefused(id, reason, message));
    }

    public List<Applied> applied() {
        return List.copyOf(applied);
    }

    public long refused() {
        return refused;
    }

    /** Good snapshots not loaded because the run does not apply snapshots. */
    public long verifiedOnly() {
        return verifiedOnly;
    }

    public Map<String, Long> refusalReasons() {
        return new TreeMap<>(refusalReasons);
    }

    /** Events of a snapshot already applied (or verified): not loaded again. */
    public long duplicates() {
        return duplicates;
    }

    /** Snapshots whose loading into the model threw. */
    public long loadFailures() {
        return loadFailures;
    }

    /** FAILED SnapshotEvents: edit requests the service could not serve (skipped, never loaded). */
    public long failedRequests() {
        return failedRequests;
    }

    /** Observer callbacks that threw (ignored). */
    public long observerFailures() {
        return observerFailures;
    }

    public Map<String, Object> summary() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("snapshots_applied", (long) applied.size());
        m.put("snapshots_refused", refused);
        m.put("snapshots_verified_not_applied", verifiedOnly);
        m.put("snapshots_other_runs", otherRuns);
        m.put("snapshots_duplicate", duplicates);
        m.put("snapshot_load_failures", loadFailures);
        m.put("snapshot_observer_failures", observerFailures);
        m.put("snapshots_failed_requests", failedRequests);
        m.put("snapshot_refusal_reasons", refusalReasons());
        List<Map<String, Object>> list = new ArrayList<>();
        for (Applied a : applied) {
            list.add(a.toMap());
        }
        m.put("snapshot_applications", list);
        return m;
    }

    @Override
    public void close() {
        if (tail != null) {
            tail.close();
            tail = null;
        }
    }
}
