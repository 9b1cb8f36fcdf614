package dev.curvewatch.service.internal;

import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.contracts.CheckpointCodec;
import dev.curvewatch.contracts.FactorCheckpointReader;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.service.ServiceConfig;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.BiFunction;
import java.util.function.Predicate;

/**
 * The ingest thread's part in sharing the runs among several service instances
 * ({@link RunOwnership}): which runs this instance acts on, what it leaves on topic service-state
 * for a taker ({@link Handover}), and what it does when it gains runs (from a killed instance, or at
 * start-up): the candidate the previous owner had out restored, the answers to it read meanwhile
 * calibrated, the latest factor checkpoint of each gained layer read again ({@link FactorRewind}).
 * Also where a start-up reads the weights and the trainer's answers from. Not thread-safe: the
 * ingest thread's.
 */
final class Takeover {
    private static final Logger LOG = LoggerFactory.getLogger(Takeover.class);

    private final ServiceConfig config;
    private final CurvewatchTopics topics;
    private final Registry registry;
    private final Outputs out;
    private final ProbeResults probeResults;
    private final FactorCheckpointReader factors;
    private final BiFunction<String, String, LayerInfo> registeredLayer;
    private final FactorRewind rewind = new FactorRewind();
    private final Handover handover = new Handover();
    private final CheckpointCodec manifestCodec = new CheckpointCodec(1 << 20);
    /** Runs owned at the last ownership change (plus those registered since): what a change gains or loses. */
    private final Set<String> owned = new HashSet<>();
    private long ownershipGeneration = -1;

    Takeover(ServiceConfig config, Registry registry, Outputs out, ProbeResults probeResults, FactorCheckpointReader factors,
             BiFunction<String, String, LayerInfo> registeredLayer) {
        this.config = config;
        this.topics = config.topics();
        this.registry = registry;
        this.out = out;
        this.probeResults = probeResults;
        this.factors = factors;
        this.registeredLayer = registeredLayer;
    }

    /** Whether this instance refreshes, calibrates and times out the run's layers now. */
    boolean acts(String runId) {
        return owned.contains(runId);
    }

    /** A run just registered: owned from its start, nothing to take over. */
    void registered(String runId) {
        if (registry.isCaughtUp() && ownershipGeneration >= 0 && registry.owns(runId)) {
            owned.add(runId);
        }
    }

    /** Per tick and owned layer: the service-state record when what a taker needs changed. */
    void tick(LayerState l, long nowMs) {
        handover.toWrite(l, nowMs).ifPresent(out::serviceState);
    }

    void onState(ConsumerRecord<byte[], byte[]> r) {
        handover.onState(r);
    }

    void weightPart(String runLayer, int part, int partition, long offset, boolean complete) {
        handover.weightPart(runLayer, part, partition, offset, complete);
    }

    void forgetRun(String runId) {
        rewind.forgetRun(runId);
        handover.forgetRun(runId);
        owned.remove(runId);
    }

    /** Whether a factors record was read again by a rewind (a refusal of it was a dead letter the first time). */
    boolean replayed(ConsumerRecord<byte[], byte[]> r) {
        return r.topic().equals(topics.factors()) && rewind.inWindow(r.partition(), r.offset());
    }

    /** A trainer's answer: calibrated by the run's owner; another instance keeps the newest per layer for a takeover. */
    void answer(ConsumerRecord<byte[], byte[]> r) {
        String run = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        if (run == null || registry.owns(run)) {
            probeResults.accept(r);
        } else {
            handover.answerForOther(r);
        }
    }

    /**
     * A record of the factors topic, before the chunk reader: notes where checkpoints start, skips
     * what a replay window already handled, and takes the manifests of runs whose chunks this
     * instance does not hold. Whether the reader should take the record.
     */
    boolean factorRecord(ConsumerRecord<byte[], byte[]> r) {
        if (r.key() == null) {
            return true;
        }
        String k = new String(r.key(), StandardCharsets.UTF_8);
        String runLayer = CheckpointCodec.runLayerOf(k);
        int slash = runLayer.indexOf('/');
        if (rewind.replaying(r.partition(), r.offset())) {
            return slash > 0 && rewind.replayed(r.partition(), runLayer.substring(0, slash));
        }
        boolean manifest = CheckpointCodec.manifestKey(runLayer).equals(k);
        rewind.seen(r.partition(), r.offset(), runLayer, manifest);
        if (manifest && slash > 0 && !registry.owns(runLayer.substring(0, slash))) {
            notOwnedManifest(runLayer.substring(0, slash), r.value());
            return false;
        }
        return true;
    }

    /**
     * The manifest of a layer whose chunks this instance does not hold (owned elsewhere, or not yet
     * assigned at start-up): its status shows the factors, and an edit of it waits for the
     * eigenbasis its owner, or this instance once the checkpoint is read again, computes. A bad one
     * is the owner's dead letter.
     */
    private void notOwnedManifest(String runId, byte[] value) {
        if (value == null || !registry.tracksRoomFor(runId)) {
            return;
        }
        try {
            FactorManifest m = manifestCodec.decodeManifest(value);
            if (!runId.equals(m.getRunId())) {
                return;
            }
            ManifestCheck.check(m, registeredLayer.apply(m.getRunId(), m.getLayer()), config.factorsMaxDim());
            registry.layerState(m.getRunId(), m.getLayer(), System.currentTimeMillis()).manifest(m, System.nanoTime());
        } catch (InvalidRecordException e) {
            LOG.debug("manifest of {} refused: {}", runId, e.getMessage());
        }
    }

    /**
     * Start-up: answers of the last {@code calibration.timeout.ms} are read (while nothing is owned
     * yet they are kept per layer, and used when this instance takes the run over with the candidate
     * they answer); older ones are not.
     */
    void seekAnswers(Consumer<byte[], byte[]> consumer, List<TopicPartition> probes) {
        long since = System.currentTimeMillis() - config.calibrationTimeoutMs();
        Map<TopicPartition, Long> at = new HashMap<>();
        probes.forEach(tp -> at.put(tp, since));
        consumer.offsetsForTimes(at, Duration.ofSeconds(60)).forEach((tp, o) -> {
            if (o == null) {
                consumer.seekToEnd(List.of(tp));
            } else {
                consumer.seek(tp, o.offset());
            }
        });
    }

    /**
     * Start-up reads each weights partition from the earliest start of the latest complete weight
     * of the layers that go there (service-state records), not from its beginning; from the
     * beginning when one of those layers has no record (an older deployment, a layer never owned).
     */
    void seekWeights(Consumer<byte[], byte[]> consumer, String weightsTopic) {
        List<TopicPartition> parts = consumer.assignment().stream().filter(tp -> tp.topic().equals(weightsTopic)).toList();
        Map<Integer, List<String>> byPartition = new HashMap<>();
        parts.forEach(tp -> byPartition.put(tp.partition(), new ArrayList<>()));
        for (Registry.Run run : registry.allRuns()) {
            if (run.info() == null) {
                continue;
            }
            for (LayerInfo l : run.info().getLayers()) {
                String key = CurvewatchTopics.runLayerKey(run.id(), l.getName());
                byPartition.get(RunOwnership.partitionOf(key, parts.size())).add(key);
            }
        }
        handover.weightSeeks(byPartition).forEach((p, offset) -> {
            if (offset >= 0) {
                consumer.seek(new TopicPartition(weightsTopic, p), offset);
                LOG.info("service ingest: weights partition {} read from offset {} (latest weights, service-state)", p, offset);
            }
        });
    }

    /**
     * The runs this instance owns changed (group assignment of edit-requests, {@link RunOwnership}):
     * a run lost drops its factor chunks; a run gained gets the candidate its previous owner had out
     * (service-state), the answers to it read meanwhile, and its latest factor checkpoint read again.
     */
    void ownershipChanges(Consumer<byte[], byte[]> consumer) {
        long generation = registry.ownershipGeneration();
        if (generation == ownershipGeneration) {
            return;
        }
        ownershipGeneration = generation;
        Set<String> now = new HashSet<>();
        registry.runIds().stream().filter(registry::owns).forEach(now::add);
        Set<String> gained = new HashSet<>(now);
        gained.removeAll(owned);
        for (String run : owned) {
            if (!now.contains(run)) {
                factors.forgetRun(run);
                handover.lost(run);
                LOG.info("service ingest: run {} is now owned by another instance", run);
            }
        }
        owned.clear();
        owned.addAll(now);
        if (gained.isEmpty()) {
            return;
        }
        for (String run : gained) {
            restore(run);
        }
        Predicate<String> ofGained = runLayer -> {
            int slash = runLayer.indexOf('/');
            return slash > 0 && gained.contains(runLayer.substring(0, slash));
        };
        rewind.seeks(ofGained).forEach((p, offset) -> {
            TopicPartition tp = new TopicPartition(topics.factors(), p);
            long position = consumer.position(tp, Duration.ofSeconds(30));
            if (offset < position) {
                rewind.replay(p, position, gained);
                consumer.seek(tp, offset);
                LOG.info("service ingest: factors partition {} read again from offset {} to {} (latest checkpoints of runs taken over)",
                        p, offset, position);
            }
        });
        LOG.info("service ingest: owns {} run(s) now, took over {}", owned.size(), gained);
    }

    /** The candidates the previous owner of a gained run had out, and the answers to them read meanwhile. */
    private void restore(String run) {
        registry.run(run).ifPresent(rs -> rs.layers().values().forEach(l -> {
            PendingCandidate c = handover.outstandingOf(run, l.layer());
            // one that timed out already is not brought back (its previous owner, or this one before a restart, gave up on it)
            if (c != null && l.answerable(c.id()) == null && System.currentTimeMillis() - c.sentMs() <= config.calibrationTimeoutMs()) {
                l.restoreOutstanding(c);
            }
        }));
        for (ConsumerRecord<byte[], byte[]> answer : handover.takeAnswers(run)) {
            try {
                probeResults.accept(answer);
            } catch (InvalidRecordException e) { // answered (or refused) by the previous owner already
                LOG.info("service ingest: answer {} p{}@{} of run {} not used after the takeover: {}", answer.topic(),
                        answer.partition(), answer.offset(), run, e.getMessage());
            }
        }
    }
}
