package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.SnapshotKind;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.WeightAssembler;
import dev.curvewatch.service.SignalPoint;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;

/**
 * The service's side of the live guard. It keeps every guard decision (streams app, trainer, its
 * own) for the API and the dashboard, and acts on the trainer's APPLIED:
 * <ul>
 *   <li><b>re-arm</b>: the run's alert rules restart on the edited model ({@link Outputs#rearm}, marked on the
 *       signals topic so that a restart's replay and the other instances re-arm at the same place),
 *       every layer of the run is refreshed at once so its baseline is measured on the edited model,
 *       and a REARMED decision says so;</li>
 *   <li><b>harm check</b>: the first probe accuracy measured on the edited model (a
 *       {@code probe_accuracy_now} signal at or after the applied step) is compared with the last one
 *       before; a drop above {@code guard.harm.tolerance} is HARMFUL, a CRITICAL {@code edit-harmful}
 *       alert, and a rollback snapshot with the weights from before the edit is written and offered
 *       (ROLLBACK_OFFERED); {@link #rollback} publishes it when someone asks.</li>
 * </ul>
 * Bounded: {@link #DECISIONS_PER_RUN} decisions and {@link #OFFERS_PER_RUN} rollback offers per run,
 * {@link #RUNS} runs, one harm check (with the edited layers' pre-edit weights) per run.
 */
public final class GuardWatch {
    private static final Logger LOG = LoggerFactory.getLogger(GuardWatch.class);
    public static final int DECISIONS_PER_RUN = 500;
    public static final int OFFERS_PER_RUN = 16;
    public static final int RUNS = 64;
    public static final String PROBE_ACCURACY = "probe_accuracy_now";

    /** An applied snapshot waiting for the edited model's probe accuracy. */
    private record Check(GuardDecision applied, Map<String, Double> before, List<WeightAssembler.Assembled> preEdit) {
    }

    private final Registry registry;
    private final AlertEvaluator alerts;
    private final Outputs out;
    private final SnapshotStore store;
    private final String codeVersion;
    private final double harmTolerance;
    private final Map<String, ArrayDeque<GuardDecision>> decisions = lru();
    private final Map<String, Map<String, SnapshotEvent>> offers = lru();
    private final Map<String, Check> checks = lru();
    /** APPLIED read while another instance (or none yet: start-up) owned the run, not yet answered by a REARMED. */
    private final Map<String, GuardDecision> unanswered = lru();

    public GuardWatch(Registry registry, AlertEvaluator alerts, Outputs out, SnapshotStore store, String codeVersion,
                      double harmTolerance) {
        this.registry = registry;
        this.alerts = alerts;
        this.out = out;
        this.store = store;
        this.codeVersion = codeVersion;
        this.harmTolerance = harmTolerance;
    }

    private static <V> Map<String, V> lru() {
        return new LinkedHashMap<>(16, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, V> eldest) {
                return size() > RUNS;
            }
        };
    }

    /** A decision read from guard-decisions; {@code live}: read after start-up (history only re-fills the list). */
    public void onDecision(GuardDecision d, boolean live) {
        synchronized (this) {
            ArrayDeque<GuardDecision> q = decisions.computeIfAbsent(d.getRunId(), r -> new ArrayDeque<>());
            q.addLast(d);
            while (q.size() > DECISIONS_PER_RUN) {
                q.removeFirst();
            }
        }
        if (!live) {
            return;
        }
        out.live("guard", d.getRunId(), Json.guardDecision(d));
        if (d.getAction() == GuardAction.APPLIED) {
            if (answers(d.getRunId())) {
                rearm(d);
            } else { // the owner re-arms and marks it on the signals topic, where this instance's alert state follows it
                synchronized (this) {
                    unanswered.put(d.getRunId(), d);
                }
            }
        } else if (d.getAction() == GuardAction.REARMED) {
            synchronized (this) {
                GuardDecision p = unanswered.get(d.getRunId());
                if (p != null && String.valueOf(p.getSnapshotId()).equals(String.valueOf(d.getSnapshotId()))) {
                    unanswered.remove(d.getRunId()); // its owner answered it
                }
            }
        }
    }

    /**
     * After each poll of guard-decisions: an APPLIED that no owner answered (read before this instance's
     * first assignment or before it caught up, or its owner died first) is answered once this instance owns the run; else a
     * snapshot applied right after a start-up would never re-arm its run.
     */
    public void answerAppliedNowOwned() {
        List<GuardDecision> due = new ArrayList<>();
        synchronized (this) {
            // an APPLIED whose markers this instance already replayed was answered by its old owner (its REARMED not read yet)
            unanswered.values().removeIf(p -> answers(p.getRunId()) && (alerts.rearmedUpTo(p.getRunId()) >= p.getStep() || due.add(p)));
        }
        due.forEach(this::rearm);
    }

    /**
     * Whether this instance answers an APPLIED of the run now: it owns the run and has replayed the signals
     * topic, so its re-arm and markers land after the history they re-arm, as they did on the instance before.
     */
    private boolean answers(String run) {
        return registry.isCaughtUp() && registry.owns(run);
    }

    private void rearm(GuardDecision applied) {
        String run = applied.getRunId();
        Registry.Run r = registry.run(run).orElse(null);
        List<Alert> resolved = out.rearm(run, applied.getStep(), String.valueOf(applied.getSnapshotId()),
                r == null ? List.of() : r.layers().keySet());
        out.alertsRaw(resolved);
        Map<String, Double> before = new LinkedHashMap<>();
        List<WeightAssembler.Assembled> preEdit = new ArrayList<>();
        if (r != null) {
            for (LayerState l : r.layers().values()) {
                l.forceRefresh(); // the edited model's baseline, measured now rather than at the next manifest
                lastBefore(run, l.layer(), applied.getStep()).ifPresent(v -> before.put(l.layer(), v));
            }
            for (LayerRho lr : applied.getLayers()) {
                LayerState l = r.layers().get(lr.getLayer());
                WeightAssembler.Assembled w = l == null ? null : l.editView().weight();
                if (w != null && w.step() <= applied.getStep()) {
                    preEdit.add(w); // the trainer's weights before it loaded the snapshot (assembled arrays are never changed)
                }
            }
        }
        synchronized (this) {
            checks.put(run, new Check(applied, before, preEdit));
        }
        Map<String, String> details = new LinkedHashMap<>();
        before.forEach((l, v) -> details.put("probe_accuracy_before." + l, fmt(v)));
        details.put("resolved_alerts", Integer.toString(resolved.size()));
        publish(applied, GuardAction.REARMED, "alert rules of run " + run + " re-armed on the edited model (snapshot "
                + applied.getSnapshotId() + " applied after step " + applied.getStep() + "): " + resolved.size()
                + " firing rule(s) resolved, baselines restart from the edited model's values, every layer refreshed now",
                applied.getSnapshotId(), details);
    }

    private Optional<Double> lastBefore(String run, String layer, long step) {
        Double v = null;
        for (SignalPoint p : registry.signal(run, layer, PROBE_ACCURACY)) {
            if (p.step() < step) {
                v = p.value();
            }
        }
        return Optional.ofNullable(v);
    }

    /** Every published signal: the first probe accuracy of an edited model settles its harm check. */
    public void onSignal(Signal s) {
        if (!PROBE_ACCURACY.equals(s.getName()) || s.getLayer() == null) {
            return;
        }
        Check c;
        synchronized (this) {
            c = checks.get(s.getRunId());
            if (c == null || s.getStep() < c.applied().getStep() || !c.before().containsKey(s.getLayer())) {
                return;
            }
            checks.remove(s.getRunId());
        }
        double before = c.before().get(s.getLayer());
        double drop = before - s.getValue();
        if (drop <= harmTolerance) {
            LOG.info("guard: snapshot {} of run {} kept probe accuracy ({} -> {})", c.applied().getSnapshotId(), s.getRunId(),
                    fmt(before), fmt(s.getValue()));
            return;
        }
        harmful(c, s, before, drop);
    }

    private void harmful(Check c, Signal s, double before, double drop) {
        GuardDecision applied = c.applied();
        Map<String, String> details = new LinkedHashMap<>();
        details.put("probe_accuracy_before", fmt(before));
        details.put("probe_accuracy_after", fmt(s.getValue()));
        details.put("tolerance", fmt(harmTolerance));
        String why = "probe accuracy fell from " + fmt(before) + " to " + fmt(s.getValue()) + " (step " + s.getStep()
                + ", measured through " + s.getLayer() + ") after snapshot " + applied.getSnapshotId() + ": more than "
                + fmt(harmTolerance) + "; the guard stops editing these layers";
        publish(applied, GuardAction.HARMFUL, why, applied.getSnapshotId(), details);
        long now = System.currentTimeMillis();
        String layer = applied.getLayers().size() == 1 ? applied.getLayers().get(0).getLayer() : applied.getLayer();
        Map<String, String> alertDetails = new LinkedHashMap<>(details);
        alertDetails.put("description", why);
        alertDetails.put("snapshot_id", String.valueOf(applied.getSnapshotId()));
        out.alertsRaw(List.of(Alert.newBuilder().setId(UUID.randomUUID().toString())
                .setFingerprint(Fingerprints.alert(applied.getRunId(), layer, "edit-harmful")).setRunId(applied.getRunId())
                .setStep(s.getStep()).setLayer(layer).setRule("edit-harmful").setSignal(PROBE_ACCURACY).setValue(s.getValue())
                .setThreshold(before - harmTolerance).setSeverity(Severity.CRITICAL).setStatus(AlertStatus.FIRING)
                .setFirstSeenMs(now).setLastSeenMs(now)
                .setSummary(String.format(Locale.ROOT, "edit hurt probe accuracy %.3f -> %.3f", before, s.getValue()))
                .setDetails(alertDetails).build()));
        offerRollback(c);
    }

    private void offerRollback(Check c) {
        GuardDecision applied = c.applied();
        if (c.preEdit().isEmpty() || applied.getSnapshotId() == null) {
            publish(applied, GuardAction.OTHER, "no rollback: the service holds no weights from before snapshot "
                    + applied.getSnapshotId(), applied.getSnapshotId(), Map.of());
            return;
        }
        String run = applied.getRunId();
        String key = "rollback:" + applied.getSnapshotId();
        String id = Fingerprints.snapshot(run, key);
        List<SnapshotEditor.LayerEdited> layers = new ArrayList<>();
        for (WeightAssembler.Assembled w : c.preEdit()) {
            layers.add(new SnapshotEditor.LayerEdited(w.layer(), w.dOut(), w.dIn(), w.weight(), w.bias(), w.step(), 1.0, -1,
                    (long) w.dOut() * w.dIn()));
        }
        try {
            SnapshotStore.Stored stored = store.write(run, id, SnapshotEditor.file(run, id, key, codeVersion, layers));
            List<LayerRho> rhos = layers.stream().map(l -> new LayerRho(l.layer(), 1.0)).toList();
            SnapshotEvent e = SnapshotEvent.newBuilder().setSnapshotId(id).setRunId(run).setStep(SnapshotEditor.step(layers))
                    .setIdempotencyKey(key).setUri(stored.uri()).setSha256(stored.sha256()).setSizeBytes(stored.sizeBytes())
                    .setDtype(DType.FLOAT32).setLayers(rhos).setCodeVersion(codeVersion).setCreatedMs(System.currentTimeMillis())
                    .setKind(SnapshotKind.ROLLBACK).setRestores(applied.getSnapshotId()).build();
            synchronized (this) {
                Map<String, SnapshotEvent> m = offers.computeIfAbsent(run, x -> new LinkedHashMap<>());
                m.put(id, e);
                while (m.size() > OFFERS_PER_RUN) {
                    m.remove(m.keySet().iterator().next());
                }
            }
            publish(applied, GuardAction.ROLLBACK_OFFERED, "rollback snapshot " + id + " holds the weights of "
                    + rhos.stream().map(LayerRho::getLayer).toList() + " from before snapshot " + applied.getSnapshotId()
                    + " (step " + e.getStep() + "); POST /api/runs/" + run + "/rollbacks/" + id + " (edit scope) sends it to the trainer",
                    id, Map.of("uri", stored.uri(), "sha256", stored.sha256()));
        } catch (java.io.IOException | RuntimeException ex) {
            LOG.error("guard: rollback snapshot {} of run {} could not be written", id, run, ex);
            publish(applied, GuardAction.OTHER, "the rollback snapshot could not be written: " + ex, applied.getSnapshotId(), Map.of());
        }
    }

    /** Publishes an offered rollback on the snapshots topic (the trainer applies it); empty if none was offered. */
    public Optional<SnapshotEvent> rollback(String run, String rollbackId) throws Exception {
        SnapshotEvent e;
        synchronized (this) {
            e = offers.getOrDefault(run, Map.of()).get(rollbackId);
        }
        if (e == null) {
            return Optional.empty();
        }
        SnapshotEvent sent = SnapshotEvent.newBuilder(e).setCreatedMs(System.currentTimeMillis()).build();
        out.snapshot(sent);
        if (registry.snapshot(sent)) {
            out.live("snapshot", run, Json.snapshot(sent));
        }
        return Optional.of(sent);
    }

    /** The run's decisions, oldest first. */
    public synchronized List<GuardDecision> decisions(String run) {
        return List.copyOf(decisions.getOrDefault(run, new ArrayDeque<>()));
    }

    private void publish(GuardDecision about, GuardAction action, String reason, String snapshotId, Map<String, String> details) {
        GuardDecision d = GuardDecision.newBuilder().setId(UUID.randomUUID().toString()).setRunId(about.getRunId())
                .setLayer(about.getLayer()).setStep(about.getStep()).setAction(action)
                .setReason(reason.length() < ContractChecks.MAX_GUARD_REASON ? reason : reason.substring(0, ContractChecks.MAX_GUARD_REASON - 1))
                .setSource(out.component()).setIdempotencyKey(about.getIdempotencyKey()).setSnapshotId(snapshotId)
                .setLayers(new ArrayList<>(about.getLayers())).setDetails(new LinkedHashMap<>(details))
                .setCreatedMs(System.currentTimeMillis()).build();
        out.guardDecision(d); // read back by the feed like every other decision: it enters the list and the live stream then
    }

    private static String fmt(double v) {
        return String.format(Locale.ROOT, "%.4f", v);
    }
}
