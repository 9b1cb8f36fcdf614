package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import dev.curvewatch.contracts.FactorCheckpointReader;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.EigenbasisRefresh;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.WeightAssembler;
import dev.curvewatch.service.ServiceConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * The service's feed thread: one assign-mode, read_committed consumer over runs, service-state,
 * factors, weights, probe-results, alerts, snapshots and signals (its own history at start-up, the
 * other instances' signals after it). With several instances it acts only on the runs it owns
 * ({@link Takeover}: factor chunks, refreshes, candidates, calibrations, timeouts).
 * It owns the factor chunks and the weight assembly, validates each factor manifest as it arrives
 * ({@link ManifestCheck}; a bad one is a dead letter and never reaches a layer), schedules
 * refreshes (one in flight per layer, at most one per {@code refresh.interval.ms}) onto the
 * refresh executor, hands probe results to {@link ProbeResults} (calibration, declines, timeouts). Nothing
 * heavy runs here: checkpoint assembly (sha256, decoding d^2 values) and eigendecompositions run
 * on the executor ({@link Refresher}), never on this thread or the Vert.x event loop.
 *
 * <p>Start-up: the runs and service-state topics are read to their end first (so weights find their
 * layers, and are read from the latest weights on), then the other topics to the end offsets seen at start; only then are refreshes scheduled, and layers
 * whose newest factors the history shows as already published are recomputed silently (bases for
 * edits, no duplicate signals).
 *
 * <p>Over 400 lines with its comments (about 360 of code): the start-up order across the topics is
 * one state machine over one consumer's positions; the per-topic work is already out
 * ({@link Takeover}, {@link ManifestCheck}, {@link ProbeResults}, {@link Refresher}).
 */
public final class Ingest extends ConsumerLoop {
    private static final Logger LOG = LoggerFactory.getLogger(Ingest.class);
    private static final int MAX_PARKED_PER_RUN = 64;

    private final ServiceConfig config;
    private final CurvewatchTopics topics;
    private final Registry registry;
    private final Outputs out;
    private final ServiceMetrics metrics;
    private final ExecutorService refreshPool;
    private final Refresher refresher;
    private final ProbeResults probeResults;
    private final AlertEvaluator alerts;
    private final FactorCheckpointReader factors;
    private final WeightAssembler weights = new WeightAssembler();
    private final AvroDeserializer<RunInfo> runDecoder = new AvroDeserializer<>(RunInfo.class);
    private final AvroDeserializer<WeightSnapshot> weightDecoder = new AvroDeserializer<>(WeightSnapshot.class);
    private final AvroDeserializer<Alert> alertDecoder = new AvroDeserializer<>(Alert.class);
    private final AvroDeserializer<SnapshotEvent> snapshotDecoder = new AvroDeserializer<>(SnapshotEvent.class);
    private final AvroDeserializer<Signal> signalDecoder = new AvroDeserializer<>(Signal.class);
    private final ParkedWeights parked;
    private final long intervalNanos;

    private final Takeover takeover;
    /** How far this thread has read each partition of the snapshots topic (the edit thread's fence after a takeover). */
    private final Map<TopicPartition, Long> snapshotsRead = new java.util.concurrent.ConcurrentHashMap<>();

    private Map<TopicPartition, Long> catchUpEnd = Map.of();
    private boolean runsDone;

    public Ingest(ServiceConfig config, Registry registry, Outputs out, ServiceMetrics metrics, ExecutorService refreshPool,
                  EigenbasisRefresh eigen, AlertEvaluator alerts) {
        super("ingest", consumer(config, out.component()));
        this.config = config;
        this.topics = config.topics();
        this.registry = registry;
        this.out = out;
        this.metrics = metrics;
        this.refreshPool = refreshPool;
        CalibrationTerms terms = new CalibrationTerms(config.calibrationSearch(), config.calibrationTolerance(),
                config.calibrationLossTolerance(), config.calibrationTrainCandidates(), config.calibrationPeakTokens());
        this.probeResults = new ProbeResults(registry, out, metrics, terms, config.calibrationTimeoutMs());
        this.refresher = new Refresher(new LayerRefresh(eigen, config.candidateMaxBytes(), config.candidatePartMaxBytes(), terms,
                config.refreshMemoryBudgetBytes()), out, metrics, config.candidateCompact());
        this.alerts = alerts;
        this.intervalNanos = TimeUnit.MILLISECONDS.toNanos(config.refreshIntervalMs());
        this.parked = new ParkedWeights(MAX_PARKED_PER_RUN, config.weightsParkedMaxBytes());
        this.factors = new FactorCheckpointReader(key -> {
            int slash = key.indexOf('/');
            // chunks of owned runs only: a takeover reads the latest checkpoint again (FactorRewind)
            return slash > 0 && registry.tracksRoomFor(key.substring(0, slash)) && registry.owns(key.substring(0, slash));
        }, m -> ManifestCheck.check(m, registeredLayer(m.getRunId(), m.getLayer()), config.factorsMaxDim()));
        this.takeover = new Takeover(config, registry, out, probeResults, factors, this::registeredLayer);
        // a run forgotten for runs.max takes its factor chunks and half-assembled weights along (ingest thread)
        registry.onForget(this::forgetRun);
    }

    private static KafkaConsumer<byte[], byte[]> consumer(ServiceConfig config, String component) {
        Properties p = FactorCheckpoints.consumerProperties(config.kafkaProperties());
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "64");
        p.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, component + "-ingest");
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    public long factorBytes() {
        return factors.bytesHeld();
    }

    /** Bytes of weight records of unregistered runs held back. */
    public long parkedBytes() {
        return parked.bytes();
    }

    private LayerInfo registeredLayer(String runId, String layer) {
        RunInfo info = registry.run(runId).map(Registry.Run::info).orElse(null);
        return info == null ? null : info.getLayers().stream().filter(l -> l.getName().equals(layer)).findFirst().orElse(null);
    }

    private void forgetRun(String runId) {
        LOG.info("forgetting run {}: more than the configured number of runs", runId);
        factors.forgetRun(runId);
        weights.forgetRun(runId);
        takeover.forgetRun(runId);
    }

    @Override
    protected void loop() {
        assign();
        while (!stopping()) {
            var records = consumer.poll(Duration.ofMillis(config.pollTimeoutMs()));
            polled();
            for (ConsumerRecord<byte[], byte[]> r : records) {
                dispatch(r);
            }
            for (TopicPartition tp : consumer.assignment()) {
                if (tp.topic().equals(topics.snapshots())) {
                    snapshotsRead.put(tp, consumer.position(tp));
                }
            }
            if (!registry.isCaughtUp()) {
                advanceCatchUp();
            }
            if (registry.isCaughtUp()) {
                takeover.ownershipChanges(consumer);
                tick();
            }
        }
    }

    private void assign() {
        List<TopicPartition> all = new ArrayList<>();
        List<TopicPartition> probes = new ArrayList<>();
        for (String t : List.of(topics.runs(), topics.serviceState(), topics.factors(), topics.weights(), topics.alerts(),
                topics.snapshots(), topics.signals(), topics.probeResults())) {
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
        takeover.seekAnswers(consumer, probes);
        catchUpEnd = new HashMap<>(consumer.endOffsets(fromStart, Duration.ofSeconds(60)));
        // runs and service-state first: weights find their layers, and the weights topic is read from the latest weights on
        List<TopicPartition> notRuns = all.stream().filter(tp -> !firstPhase(tp)).toList();
        consumer.pause(notRuns);
        LOG.info("service ingest: catching up on {} partitions", catchUpEnd.size());
    }

    private boolean firstPhase(TopicPartition tp) {
        return tp.topic().equals(topics.runs()) || tp.topic().equals(topics.serviceState());
    }

    private boolean reached(TopicPartition tp) {
        Long end = catchUpEnd.get(tp);
        return end == null || consumer.position(tp, Duration.ofSeconds(30)) >= end;
    }

    private void advanceCatchUp() {
        if (!runsDone) {
            if (catchUpEnd.keySet().stream().filter(this::firstPhase).allMatch(this::reached)) {
                runsDone = true;
                takeover.seekWeights(consumer, topics.weights());
                consumer.resume(consumer.paused());
            }
            return;
        }
        if (!catchUpEnd.keySet().stream().allMatch(this::reached)) {
            return;
        }
        // signals stay assigned: the other instances' signals fill the history and the alert state (this one's are skipped)
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
                takeover.answer(r);
            } else if (t.equals(topics.serviceState())) {
                takeover.onState(r);
            } else if (t.equals(topics.alerts())) {
                onAlert(r);
            } else if (t.equals(topics.snapshots())) {
                onSnapshot(r);
            } else if (t.equals(topics.signals())) {
                if (!registry.isCaughtUp() || !out.ours(r.headers())) {
                    onHistorySignal(r);
                }
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
        if (ours && registry.isCaughtUp() && !takeover.replayed(r)) {
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
        registry.register(info, System.currentTimeMillis()); // forgets runs beyond runs.max (forgetRun)
        takeover.registered(info.getRunId());
        if (registry.isCaughtUp()) {
            out.live("run", info.getRunId(), Json.runInfo(info));
        }
        for (ParkedWeights.Parked p : parked.release(info.getRunId())) {
            try {
                onWeight(p.record(), p.sinceMs());
            } catch (InvalidRecordException e) {
                deadLetter(p.record(), e);
            } catch (RuntimeException e) {
                LOG.error("could not process parked weights {} p{}@{}", p.record().topic(), p.record().partition(), p.record().offset(), e);
                deadLetter(p.record(), new InvalidRecordException(RejectReason.MALFORMED, "could not be processed: " + e, e));
            }
        }
    }

    // ---- factors ---------------------------------------------------------------------------

    private void onFactor(ConsumerRecord<byte[], byte[]> r) {
        if (!takeover.factorRecord(r)) {
            return; // replayed for another run, or the manifest of a layer whose chunks this instance does not hold
        }
        // a manifest that fails ManifestCheck throws here: a dead letter (reject), the layer keeps its previous one
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
            if (!registry.isCaughtUp() || System.currentTimeMillis() - sinceMs > config.unknownRunGraceMs()) {
                throw new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + w.getRunId() + "' is not registered");
            }
            for (ParkedWeights.Refused x : parked.park(w.getRunId(), r, sinceMs)) {
                deadLetter(x.record(), x.why());
            }
            return;
        }
        LayerInfo layer = run.info().getLayers().stream().filter(l -> l.getName().equals(w.getLayer())).findFirst()
                .orElseThrow(() -> new InvalidRecordException(RejectReason.UNKNOWN_LAYER, "layer '" + w.getLayer()
                        + "' is not watched by run '" + w.getRunId() + "'"));
        var assembled = weights.accept(w, layer);
        takeover.weightPart(expected, w.getPart(), r.partition(), r.offset(), assembled.isPresent());
        assembled.ifPresent(a -> registry.layerState(a.runId(), a.layer(), System.currentTimeMillis()).weight(a));
    }

    private void deadLetter(ConsumerRecord<byte[], byte[]> r, InvalidRecordException why) {
        out.deadLetter(r.topic(), r.partition(), r.offset(), r.key(), r.value(), why);
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
        if (registry.isCaughtUp() && a != null) {
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
        if (registry.snapshot(e) && registry.isCaughtUp()) {
            out.live("snapshot", e.getRunId(), Json.snapshot(e));
        }
    }

    private void onHistorySignal(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        Signal s = signalDecoder.decode(r.value());
        ContractChecks.requireId(s.getRunId(), "run_id");
        if (s.getLayer() != null) {
            ContractChecks.requireId(s.getLayer(), "layer");
            // never brings back a run forgotten for runs.max (or one it would have to forget another for)
            LayerState l = registry.layerStateIfRoom(s.getRunId(), s.getLayer(), s.getTimestampMs()).orElse(null);
            if (l == null) {
                return;
            }
            switch (s.getName()) {
                case "effective_rank_g", "refresh_failed" -> l.historyRefreshed(s.getFactorVersion());
                case "calibrated_rho" -> l.calibratedFromHistory(s.getFactorVersion(), s.getValue());
                case "kept_pairs" -> l.keptPairsFromHistory(s.getFactorVersion(), (long) s.getValue());
                default -> {
                }
            }
        }
        boolean marker = AlertEvaluator.REARM_MARKER.equals(s.getName());
        boolean held = registry.ifHeld(s.getRunId(), () -> {
            registry.history().add(s);
            alerts.replay(s);
        });
        if (held && !marker && registry.isCaughtUp()) { // another instance's signal
            out.live("signal", s.getRunId(), Json.signal(s));
        }
    }

    /** How far this instance has read a partition of the snapshots topic (-1: not yet). */
    public long snapshotsReadUpTo(TopicPartition tp) {
        return snapshotsRead.getOrDefault(tp, -1L);
    }

    // ---- refreshes and timeouts --------------------------------------------------------------

    private void tick() {
        long nowMs = System.currentTimeMillis();
        long nowNanos = System.nanoTime();
        for (ParkedWeights.Refused x : parked.expire(nowMs, config.unknownRunGraceMs())) {
            deadLetter(x.record(), x.why());
        }
        for (Registry.Run run : registry.allRuns()) {
            if (!takeover.acts(run.id())) {
                continue; // another instance refreshes and calibrates it (or this one has not taken it over yet)
            }
            for (LayerState l : run.layers().values()) {
                takeover.tick(l, nowMs);
                probeResults.expire(l, nowMs);
                LayerState.Bases owed = l.startOwedCandidate();
                if (owed != null) {
                    try {
                        refreshPool.execute(() -> refresher.sendOwed(l, owed));
                    } catch (RejectedExecutionException e) {
                        l.notStarted("service is stopping");
                    }
                } else if (l.due(nowNanos, intervalNanos)) {
                    try {
                        startRefresh(l, nowNanos);
                    } catch (RuntimeException e) { // never the end of the loop; the next manifest or tick tries again
                        LOG.error("could not start the refresh of {}", l.key(), e);
                        l.notStarted(e.toString());
                    }
                }
            }
        }
    }

    private void startRefresh(LayerState l, long nowNanos) {
        String key = l.key();
        if (!factors.isComplete(key)) {
            return; // the next version's chunks are half way in: its manifest follows
        }
        // no copy, no checksum here: the parts are assembled on the refresh thread
        FactorCheckpointReader.Parts parts = factors.detach(key).orElseThrow();
        long seenNanos = l.requestedNanos();
        boolean silent = l.start(nowNanos);
        try {
            refreshPool.execute(() -> refresher.run(l, parts, seenNanos, silent));
        } catch (RejectedExecutionException e) {
            l.notStarted("service is stopping");
        }
    }

    /** Factors manifest read -> signals sent, of the latest refresh (NaN before the first). */
    public double lastLatencySeconds() {
        return refresher.lastLatencySeconds();
    }
}
