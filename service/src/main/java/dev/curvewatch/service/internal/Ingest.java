package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.curvature.EigenbasisRefresh;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.WeightAssembler;
import dev.curvewatch.service.ServiceConfig;
import dev.curvewatch.workers.CheckpointCorruptException;
import dev.curvewatch.workers.FactorCheckpoint;
import dev.curvewatch.workers.FactorCheckpointReader;
import dev.curvewatch.workers.FactorCheckpoints;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * The service's feed thread: one assign-mode, read_committed consumer over runs, factors,
 * weights, probe-results, alerts, snapshots and (during start-up only) the service's own signals.
 * It owns the factor chunks and the weight assembly, schedules refreshes (one in flight per
 * layer, at most one per {@code refresh.interval.ms}) onto the refresh executor, calibrates from
 * probe results and expires unanswered candidates. Nothing heavy runs here: eigendecompositions
 * run on the executor, never on this thread or the Vert.x event loop.
 *
 * <p>Start-up: the runs topic is read to its end first (so weights find their layers), then the
 * other topics to the end offsets seen at start; only then are refreshes scheduled, and layers
 * whose newest factors the history shows as already published are recomputed silently (bases for
 * edits, no duplicate signals).
 */
public final class Ingest implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(Ingest.class);
    private static final int MAX_PARKED_PER_RUN = 64;

    private final ServiceConfig config;
    private final CurvewatchTopics topics;
    private final Registry registry;
    private final Outputs out;
    private final ServiceMetrics metrics;
    private final ExecutorService refreshPool;
    private final LayerRefresh refresh;
    private final AlertEvaluator alerts;
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final FactorCheckpointReader factors;
    private final WeightAssembler weights = new WeightAssembler();
    private final AvroDeserializer<RunInfo> runDecoder = new AvroDeserializer<>(RunInfo.class);
    private final AvroDeserializer<WeightSnapshot> weightDecoder = new AvroDeserializer<>(WeightSnapshot.class);
    private final AvroDeserializer<ProbeResult> probeDecoder = new AvroDeserializer<>(ProbeResult.class);
    private final AvroDeserializer<Alert> alertDecoder = new AvroDeserializer<>(Alert.class);
    private final AvroDeserializer<SnapshotEvent> snapshotDecoder = new AvroDeserializer<>(SnapshotEvent.class);
    private final AvroDeserializer<Signal> signalDecoder = new AvroDeserializer<>(Signal.class);
    private final Map<String, ArrayDeque<Parked>> parked = new HashMap<>();
    private final long intervalNanos;

    private volatile boolean stop;
    private volatile boolean caughtUp;
    private volatile long lastPollMs;
    private volatile Throwable failure;
    private Map<TopicPartition, Long> catchUpEnd = Map.of();
    private volatile double lastLatency = Double.NaN;
    private boolean runsDone;

    private record Parked(ConsumerRecord<byte[], byte[]> record, long sinceMs) {
    }

    public Ingest(ServiceConfig config, Registry registry, Outputs out, ServiceMetrics metrics, ExecutorService refreshPool,
                  EigenbasisRefresh eigen, AlertEvaluator alerts) {
        this.config = config;
        this.topics = config.topics();
        this.registry = registry;
        this.out = out;
        this.metrics = metrics;
        this.refreshPool = refreshPool;
        this.refresh = new LayerRefresh(eigen);
        this.alerts = alerts;
        this.intervalNanos = TimeUnit.MILLISECONDS.toNanos(config.refreshIntervalMs());
        this.factors = new FactorCheckpointReader(key -> {
            int slash = key.indexOf('/');
            return slash > 0 && registry.tracksRoomFor(key.substring(0, slash));
        });
        Properties p = FactorCheckpoints.consumerProperties(config.kafkaProperties());
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "64");
        p.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, out.component() + "-ingest");
        this.consumer = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    public boolean caughtUp() {
        return caughtUp;
    }

    public long lastPollMs() {
        return lastPollMs;
    }

    public Throwable failure() {
        return failure;
    }

    public long factorBytes() {
        return factors.bytesHeld();
    }

    public void requestStop() {
        stop = true;
        consumer.wakeup();
    }

    @Override
    public void run() {
        try {
            assign();
            while (!stop) {
                var records = consumer.poll(Duration.ofMillis(config.pollTimeoutMs()));
                lastPollMs = System.currentTimeMillis();
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    dispatch(r);
                }
                if (!caughtUp) {
                    advanceCatchUp();
                }
                if (caughtUp) {
                    tick();
                }
            }
        } catch (WakeupException e) {
            if (!stop) {
                failure = e;
            }
        } catch (Throwable t) {
            failure = t;
            LOG.error("ingest loop stopped on a fatal error", t);
        } finally {
            consumer.close(Duration.ofSeconds(5));
        }
    }

    private void assign() {
        List<TopicPartition> all = new ArrayList<>();
        List<TopicPartition> probes = new ArrayList<>();
        for (String t : List.of(topics.runs(), topics.factors(), topics.weights(), topics.alerts(), topics.snapshots(),
                topics.signals(), topics.probeResults())) {
            List<PartitionInfo> infos = consumer.partitionsFor(t, Duration.ofSeconds(60));
            if (infos == null || infos.isEmpty()) {
                throw new IllegalStateException("topic " + t + " does not exist (create the topics with `curvewatch broker` or LocalKafka)");
            }
            for (PartitionInfo pi : infos) {
                TopicPartition tp = new TopicPartition(t, pi.partition());
                all.add(tp);
                if (t.equals(topics.probeResults())) {
                    probes.add(tp);
                }
            }
        }
        consumer.assign(all);
        List<TopicPartition> fromStart = new ArrayList<>(all);
        fromStart.removeAll(probes);
        consumer.seekToBeginning(fromStart);
        consumer.seekToEnd(probes); // results for candidates of an earlier instance have nobody to answer
        catchUpEnd = new HashMap<>(consumer.endOffsets(fromStart, Duration.ofSeconds(60)));
        List<TopicPartition> notRuns = all.stream().filter(tp -> !tp.topic().equals(topics.runs())).toList();
        consumer.pause(notRuns);
        LOG.info("service ingest: catching up on {} partitions", catchUpEnd.size());
    }

    private boolean reached(TopicPartition tp) {
        Long end = catchUpEnd.get(tp);
        return end == null || consumer.position(tp, Duration.ofSeconds(30)) >= end;
    }

    private void advanceCatchUp() {
        if (!runsDone) {
            if (catchUpEnd.keySet().stream().filter(tp -> tp.topic().equals(topics.runs())).allMatch(this::reached)) {
                runsDone = true;
                consumer.resume(consumer.paused());
            }
            return;
        }
        if (!catchUpEnd.keySet().stream().allMatch(this::reached)) {
            return;
        }
        // own signals were only needed for the history; from now on the service writes them itself
        List<TopicPartition> keep = new ArrayList<>(consumer.assignment());
        keep.removeIf(tp -> tp.topic().equals(topics.signals()));
        consumer.assign(keep);
        caughtUp = true;
        registry.caughtUp();
        LOG.info("service ingest: caught up ({} runs, {} factor layers, {} MiB of factor chunks)", registry.runIds().size(),
                factors.layers().size(), factors.bytesHeld() >> 20);
    }

    private void dispatch(ConsumerRecord<byte[], byte[]> r) {
        String t = r.topic();
        try {
            if (t.equals(topics.runs())) {
                onRun(r);
            } else if (t.equals(topics.factors())) {
                onFactor(r);
            } else if (t.equals(topics.weights())) {
                onWeight(r, System.currentTimeMillis());
            } else if (t.equals(topics.probeResults())) {
                onProbeResult(r);
            } else if (t.equals(topics.alerts())) {
                onAlert(r);
            } else if (t.equals(topics.snapshots())) {
                onSnapshot(r);
            } else if (t.equals(topics.signals())) {
                onHistorySignal(r);
            }
            metrics.inc("curvewatch_service_records_total", kind(t));
        } catch (InvalidRecordException e) {
            reject(r, e);
        } catch (RuntimeException e) {
            LOG.error("could not process {} p{}@{}", t, r.partition(), r.offset(), e);
            reject(r, new InvalidRecordException(RejectReason.MALFORMED, "could not be processed: " + e, e));
        }
    }

    /**
     * Weights, probe results and factor records that break the contract become dead letters
     * (the service is their only reader). While catching up they are only logged: a replay after
     * a restart would otherwise dead-letter the same old records again.
     */
    private void reject(ConsumerRecord<byte[], byte[]> r, InvalidRecordException e) {
        String t = r.topic();
        metrics.inc("curvewatch_service_records_total", kind(t));
        boolean ours = t.equals(topics.weights()) || t.equals(topics.probeResults()) || t.equals(topics.factors());
        if (ours && caughtUp) {
            out.deadLetter(t, r.partition(), r.offset(), r.key(), r.value(), e);
            if (t.equals(topics.probeResults())) {
                metrics.inc("curvewatch_service_probe_results_total", "dead_letter");
            }
        } else {
            // runs, alerts and snapshots are validated (and dead-lettered) by the streams app and their writers
            LOG.warn("skipping a bad record of {} p{}@{}: {}", t, r.partition(), r.offset(), e.getMessage());
        }
    }

    private String kind(String topic) {
        return topic.startsWith(topics.prefix()) ? topic.substring(topics.prefix().length()) : topic;
    }

    // ---- runs ------------------------------------------------------------------------------

    private void onRun(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        RunInfo info = runDecoder.decode(r.value());
        ContractChecks.checkRun(info);
        for (String gone : registry.register(info, System.currentTimeMillis())) {
            LOG.info("forgetting run {}: more than the configured number of runs", gone);
            for (String key : new ArrayList<>(factors.layers())) {
                if (key.startsWith(gone + "/")) {
                    factors.forget(key);
                }
            }
        }
        if (caughtUp) {
            out.live("run", info.getRunId(), Json.runInfo(info));
        }
        ArrayDeque<Parked> waiting = parked.remove(info.getRunId());
        if (waiting != null) {
            for (Parked p : waiting) {
                try {
                    onWeight(p.record(), p.sinceMs());
                } catch (InvalidRecordException e) {
                    out.deadLetter(p.record().topic(), p.record().partition(), p.record().offset(), p.record().key(), p.record().value(), e);
                }
            }
        }
    }

    // ---- factors ---------------------------------------------------------------------------

    private void onFactor(ConsumerRecord<byte[], byte[]> r) {
        factors.accept(r.key(), r.value()).ifPresent(runLayer -> {
            FactorManifest m = factors.manifest(runLayer).orElseThrow();
            registry.layerState(m.getRunId(), m.getLayer(), System.currentTimeMillis()).manifest(m, System.nanoTime());
        });
    }

    // ---- weights ---------------------------------------------------------------------------

    private void onWeight(ConsumerRecord<byte[], byte[]> r, long sinceMs) {
        if (r.value() == null) {
            return;
        }
        WeightSnapshot w = weightDecoder.decode(r.value());
        ContractChecks.requireId(w.getRunId(), "run_id");
        ContractChecks.requireId(w.getLayer(), "layer");
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        String expected = CurvewatchTopics.runLayerKey(w.getRunId(), w.getLayer());
        if (!expected.equals(key)) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "weights key '" + key + "' differs from run/layer '" + expected + "'");
        }
        Registry.Run run = registry.run(w.getRunId()).orElse(null);
        if (run == null || run.info() == null) {
            if (!caughtUp || System.currentTimeMillis() - sinceMs > config.unknownRunGraceMs()) {
                throw new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + w.getRunId() + "' is not registered");
            }
            ArrayDeque<Parked> q = parked.computeIfAbsent(w.getRunId(), k -> new ArrayDeque<>());
            q.addLast(new Parked(r, sinceMs));
            if (q.size() > MAX_PARKED_PER_RUN) {
                Parked old = q.removeFirst();
                out.deadLetter(old.record().topic(), old.record().partition(), old.record().offset(), old.record().key(),
                        old.record().value(), new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + w.getRunId()
                                + "' is not registered and more than " + MAX_PARKED_PER_RUN + " of its weight records wait"));
            }
            return;
        }
        LayerInfo layer = run.info().getLayers().stream().filter(l -> l.getName().equals(w.getLayer())).findFirst()
                .orElseThrow(() -> new InvalidRecordException(RejectReason.UNKNOWN_LAYER, "layer '" + w.getLayer()
                        + "' is not watched by run '" + w.getRunId() + "'"));
        weights.accept(w, layer).ifPresent(a -> registry.layerState(a.runId(), a.layer(), System.currentTimeMillis()).weight(a));
    }

    private void expireParked(long nowMs) {
        for (var it = parked.entrySet().iterator(); it.hasNext(); ) {
            var e = it.next();
            while (!e.getValue().isEmpty() && nowMs - e.getValue().peekFirst().sinceMs() > config.unknownRunGraceMs()) {
                Parked p = e.getValue().removeFirst();
                out.deadLetter(p.record().topic(), p.record().partition(), p.record().offset(), p.record().key(), p.record().value(),
                        new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + e.getKey() + "' was not registered within "
                                + config.unknownRunGraceMs() + " ms"));
            }
            if (e.getValue().isEmpty()) {
                it.remove();
            }
        }
    }

    // ---- alerts, snapshots, history ----------------------------------------------------------

    private void onAlert(ConsumerRecord<byte[], byte[]> r) {
        String fp = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        Alert a = r.value() == null ? null : alertDecoder.decode(r.value());
        if (fp == null && a != null) {
            fp = a.getFingerprint();
        }
        if (fp == null) {
            return;
        }
        registry.alert(fp, a);
        if (caughtUp && a != null) {
            out.live("alert", a.getRunId(), Json.alert(a));
        }
    }

    private void onSnapshot(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        SnapshotEvent e = snapshotDecoder.decode(r.value());
        ContractChecks.requireId(e.getRunId(), "run_id");
        ContractChecks.requireId(e.getSnapshotId(), "snapshot_id");
        if (registry.snapshot(e) && caughtUp) {
            out.live("snapshot", e.getRunId(), Json.snapshot(e));
        }
    }

    private void onHistorySignal(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        Signal s = signalDecoder.decode(r.value());
        ContractChecks.requireId(s.getRunId(), "run_id");
        registry.history().add(s);
        if (s.getLayer() != null) {
            LayerState l = registry.layerState(s.getRunId(), s.getLayer(), s.getTimestampMs());
            if (s.getName().equals("effective_rank_g") || s.getName().equals("refresh_failed")) {
                l.historyRefreshed(s.getFactorVersion());
            } else if (s.getName().equals("calibrated_rho")) {
                l.calibratedFromHistory(s.getFactorVersion(), s.getValue(), -1);
            }
        }
        alerts.evaluate(s, AlertEvaluator.Context.NONE, s.getTimestampMs(), false);
    }

    // ---- probe results ---------------------------------------------------------------------

    private void onProbeResult(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        ProbeResult pr = probeDecoder.decode(r.value());
        ContractChecks.requireId(pr.getRunId(), "run_id");
        ContractChecks.requireId(pr.getLayer(), "layer");
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        if (!pr.getRunId().equals(key)) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "probe result key '" + key + "' is not its run id '" + pr.getRunId() + "'");
        }
        PendingCandidate c = findCandidate(pr.getCandidateId());
        if (c == null) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "candidate_id '" + pr.getCandidateId()
                    + "' was not sent by this service, or was already answered, superseded or timed out");
        }
        Calibration.Outcome o = Calibration.calibrate(pr, c, config.calibrationTolerance(), config.calibrationLossTolerance());
        LayerState layer = registry.existing(c.runId(), c.layer()).orElseThrow();
        if (!layer.answered(c)) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "candidate " + c.id() + " (factor version "
                    + c.factorVersion() + ") is older than the calibration already applied (version " + layer.calibratedVersion() + ")");
        }
        layer.calibrated(c, o, pr.getStep());
        long now = System.currentTimeMillis();
        out.scores(Calibration.scores(o, c, pr.getStep(), now));
        out.signals(Calibration.signals(o, c, pr.getStep(), now), new AlertEvaluator.Context(layer.topExact(), o.rho()));
        out.live("layer", c.runId(), Json.layer(layer));
        metrics.inc("curvewatch_service_probe_results_total", "calibrated");
        LOG.info("calibrated {}/{} v{}: rho {} ({} mode, {} evaluations), gap {}", c.runId(), c.layer(), c.factorVersion(), o.rho(),
                o.mode(), o.trace().size(), o.gap());
    }

    private PendingCandidate findCandidate(String id) {
        for (Registry.Run run : registry.allRuns()) {
            for (LayerState l : run.layers().values()) {
                PendingCandidate c = l.outstanding(id);
                if (c != null) {
                    return c;
                }
            }
        }
        return null;
    }

    // ---- refreshes and timeouts --------------------------------------------------------------

    private void tick() {
        long nowMs = System.currentTimeMillis();
        long nowNanos = System.nanoTime();
        expireParked(nowMs);
        for (Registry.Run run : registry.allRuns()) {
            for (LayerState l : run.layers().values()) {
                for (PendingCandidate c : l.expire(nowMs, config.calibrationTimeoutMs())) {
                    metrics.inc("curvewatch_service_calibration_timeouts_total");
                    LOG.warn("candidate {} of {} not answered within {} ms", c.id(), l.key(), config.calibrationTimeoutMs());
                    out.signals(List.of(Calibration.signal(c, "calibration_timeouts", l.calibrationTimeouts(), Map.of(), nowMs)),
                            new AlertEvaluator.Context(l.topExact(), l.calibratedRho()));
                    out.live("layer", l.runId(), Json.layer(l));
                }
                if (l.due(nowNanos, intervalNanos)) {
                    startRefresh(l, nowNanos);
                }
            }
        }
    }

    private void startRefresh(LayerState l, long nowNanos) {
        String key = l.key();
        if (!factors.isComplete(key)) {
            return; // the next version's chunks are half way in: its manifest follows
        }
        FactorCheckpoint cp;
        try {
            cp = factors.assemble(key);
        } catch (CheckpointCorruptException e) {
            l.notStarted(e.getMessage(), true);
            LOG.warn("refresh of {} not possible: {}", key, e.getMessage());
            metrics.inc("curvewatch_service_refreshes_total", "failed");
            return;
        }
        long seenNanos = l.requestedNanos();
        boolean silent = l.start(nowNanos);
        FactorManifest m = cp.manifest();
        try {
            refreshPool.execute(() -> runRefresh(l, cp, m, seenNanos, silent));
        } catch (RejectedExecutionException e) {
            l.notStarted("service is stopping", false);
        }
    }

    /** On a refresh thread: the math, then publishing. */
    private void runRefresh(LayerState l, FactorCheckpoint cp, FactorManifest m, long seenNanos, boolean silent) {
        try {
            LayerState.Bases prev = l.bases();
            LayerRefresh.Input in = new LayerRefresh.Input(m.getRunId(), m.getLayer(), m.getVersion(), m.getStepLast(),
                    m.getTokenCount(), m.getDIn(), m.getDOut(), cp.meanA(), cp.meanG());
            LayerRefresh.Outcome o = refresh.refresh(in, prev == null ? null : prev.g(), prev == null ? null : prev.a());
            long now = System.currentTimeMillis();
            if (!o.ok()) {
                l.failed(in, o.failure(), now);
                metrics.inc("curvewatch_service_refreshes_total", "failed");
                LOG.warn("refresh of {} v{} failed: {}", l.key(), m.getVersion(), o.failure());
                if (!silent) {
                    out.signals(List.of(LayerRefresh.failureSignal(in, now)), new AlertEvaluator.Context(l.topExact(), l.calibratedRho()));
                    out.live("layer", l.runId(), Json.layer(l));
                }
                return;
            }
            l.refreshed(o, now);
            metrics.inc("curvewatch_service_refresh_seconds_total", o.eighSeconds());
            if (silent) {
                metrics.inc("curvewatch_service_refreshes_total", "silent");
                LOG.info("refresh of {} v{} recomputed after restart (signals already published)", l.key(), m.getVersion());
                return;
            }
            double latency = (System.nanoTime() - seenNanos) / 1e9;
            out.signals(LayerRefresh.signals(o, latency, now), new AlertEvaluator.Context(l.topExact(), l.calibratedRho()));
            metrics.inc("curvewatch_service_refreshes_total", "ok");
            metrics.inc("curvewatch_service_refresh_latency_seconds_total", latency);
            lastLatency = latency;
            if (o.plan().isPresent() && l.awaitingAnswer()) {
                // one candidate at a time per layer: a newer one would supersede the answer the trainer is
                // computing now; the next refresh after that answer (or its timeout) sends the newest bases
                metrics.inc("curvewatch_service_candidates_deferred_total");
            } else if (o.plan().isPresent()) {
                String id = m.getLayer() + "-v" + m.getVersion() + "-" + UUID.randomUUID().toString().substring(0, 8);
                EditCandidate c = LayerRefresh.candidate(o, id, now);
                LayerRefresh.CandidatePlan p = o.plan().get();
                l.sent(new PendingCandidate(id, m.getRunId(), m.getLayer(), m.getStepLast(), m.getVersion(), p.rhos(), p.thresholds(),
                        p.keptPairs(), (long) m.getDIn() * m.getDOut(), now));
                out.candidate(c);
            }
            out.live("layer", l.runId(), Json.layer(l));
            LOG.info("refreshed {} v{} ({} x {}): eigh {} s{}, factors ready -> signals {} s", l.key(), m.getVersion(), m.getDOut(),
                    m.getDIn(), String.format("%.3f", o.eighSeconds()), o.skippedG() && o.skippedA() ? " (warm start)" : "",
                    String.format("%.3f", latency));
        } catch (Throwable t) {
            LayerRefresh.Input in = new LayerRefresh.Input(m.getRunId(), m.getLayer(), m.getVersion(), m.getStepLast(),
                    m.getTokenCount(), m.getDIn(), m.getDOut(), null, null);
            l.failed(in, t.toString(), System.currentTimeMillis());
            metrics.inc("curvewatch_service_refreshes_total", "failed");
            LOG.error("refresh of {} v{} failed", l.key(), m.getVersion(), t);
        }
    }

    /** Factors manifest read -> signals sent, of the latest refresh (NaN before the first). */
    public double lastLatencySeconds() {
        return lastLatency;
    }
}
