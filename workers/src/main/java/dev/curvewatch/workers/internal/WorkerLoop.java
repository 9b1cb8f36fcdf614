package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.contracts.CheckpointCodec;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.FactorMode;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.DeadLetters;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.workers.WorkerConfig;
import dev.curvewatch.workers.WorkerMetrics;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.WakeupException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Properties;
import java.util.Set;

/**
 * The single poll thread of a worker: validate, accumulate, checkpoint, restore. All Kafka
 * clients are used from this thread only; other threads read metrics and ask it to stop.
 *
 * <p>Consistency rule: the in-memory accumulators always equal "last committed checkpoint +
 * every accepted capture between the committed offsets and {@link #positions}". A checkpoint
 * commits chunks, manifests, dead letters and offsets in one transaction; any failure of it
 * drops the in-memory state of the affected partitions and rebuilds it from the last committed
 * checkpoint and offsets, so nothing is counted twice or lost.
 *
 * <p>This class is the transaction core, and is longer than ~400 lines on purpose: every path
 * that opens, commits or aborts the transaction or rebuilds state after it (poll, dead letters,
 * checkpoint, rollback, the rebalance callbacks) reads and writes the same positions, open
 * transaction and producer, and the consistency rule above can only be checked with all of them
 * in view. What does not touch the transaction lives in classes of its own: the unknown-run policy
 * ({@link UnknownRunDeferral}), the tensors' staging ({@link StagingBuffers}), restoring layers
 * from checkpoints ({@link LayerRestore}), the layers held ({@link OwnedLayers}), the client
 * settings ({@link WorkerClients}), validation ({@link CaptureValidator}), the checkpoint cadence
 * ({@link CheckpointSchedule}) and the factor budget ({@link FactorBudget}).
 */
public final class WorkerLoop implements ConsumerRebalanceListener {
    private static final Logger log = LoggerFactory.getLogger(WorkerLoop.class);
    private static final Duration IO_TIMEOUT = Duration.ofSeconds(30);
    private static final long RUNS_CATCH_UP_MIN_INTERVAL_MS = 200;

    private final WorkerConfig config;
    private final WorkerMetrics metrics;
    private final CurvewatchTopics topics;
    private final Properties client;
    private final String instanceId;
    private final CaptureValidator validator;
    private final CheckpointCodec codec;
    private final AvroSerializer<DeadLetter> deadLetterSerializer = new AvroSerializer<>(DeadLetter.class);
    private final Precision precision;
    private final String codeVersion;

    private KafkaConsumer<byte[], byte[]> consumer;
    private KafkaConsumer<byte[], byte[]> restoreConsumer;
    private KafkaProducer<byte[], byte[]> producer;
    private RunRegistry runs;
    private int capturePartitions;
    private int factorPartitions;

    private LayerRestore restorer;

    private final OwnedLayers layers = new OwnedLayers();
    private final Set<TopicPartition> assigned = new HashSet<>();
    /** Next offset to commit per partition: one past the last record whose effect is in memory. */
    private final Map<TopicPartition, Long> positions = new HashMap<>();
    private final UnknownRunDeferral deferral;
    private final StagingBuffers staging = new StagingBuffers();
    /** Layers refused by the budget, logged once each (every capture of theirs is still a dead letter). */
    private final Set<String> refusedLayers = new HashSet<>();
    private boolean txnOpen;
    private final CheckpointSchedule schedule;
    private final FactorBudget budget;
    private double flopsSinceCheckpoint;
    private long accumulateNanosSinceCheckpoint;

    private volatile boolean running = true;
    private volatile long lastPollMillis;
    private volatile double lagRecords;
    private volatile int ownedPartitions;
    private volatile String phase = "starting";

    public WorkerLoop(WorkerConfig config, WorkerMetrics metrics, String codeVersion) {
        this.config = config;
        this.metrics = metrics;
        this.topics = config.topics();
        this.client = config.kafkaProperties();
        this.instanceId = config.instanceId();
        this.validator = new CaptureValidator(config.maxRecordBytes());
        this.codec = new CheckpointCodec(config.chunkBytes());
        this.precision = config.precision();
        this.budget = new FactorBudget(config.maxLayerSide(), config.factorsMemoryBudgetBytes(), precision);
        this.schedule = new CheckpointSchedule(config.checkpointIntervalMs(), config.checkpointMaxIntervalMs(),
                config.checkpointCaptureRatio(), config.checkpointTokens());
        this.codeVersion = codeVersion;
        this.deferral = new UnknownRunDeferral(config.unknownRunGraceMs());
        metrics.gauge("curvewatch_worker_lag_records", () -> lagRecords);
        metrics.gauge("curvewatch_worker_owned_layers", layers::count);
        metrics.gauge("curvewatch_worker_owned_partitions", () -> ownedPartitions);
        metrics.gauge("curvewatch_worker_factor_bytes", layers::factorBytes);
        metrics.gauge("curvewatch_worker_deferred_partitions", deferral::paused);
    }

    public String phase() {
        return phase;
    }

    public long lastPollMillis() {
        return lastPollMillis;
    }

    public int ownedPartitions() {
        return ownedPartitions;
    }

    public int ownedLayers() {
        return layers.count();
    }

    public double lagRecords() {
        return lagRecords;
    }

    /** Asks the loop to finish: it writes a final checkpoint and leaves the group. */
    public void requestStop() {
        running = false;
        KafkaConsumer<byte[], byte[]> c = consumer;
        if (c != null) {
            c.wakeup();
        }
    }

    public String transactionalId() {
        return WorkerClients.transactionalId(config, instanceId);
    }

    /** Runs until {@link #requestStop()}; throws on a fatal error (fenced, corrupt checkpoint). */
    public void run() {
        try {
            open();
            phase = "running";
            while (running) {
                step();
            }
            phase = "stopping";
            finalCheckpoint();
        } finally {
            closeAll();
            phase = "stopped";
        }
    }

    private void open() {
        producer = newProducer();
        // fences an earlier incarnation with the same id and aborts its open transaction, so the
        // factors topic's last stable offset moves past it before we restore
        producer.initTransactions();
        runs = new RunRegistry(client, topics.runs(), IO_TIMEOUT);
        runs.catchUp(IO_TIMEOUT, 0);
        restoreConsumer = new KafkaConsumer<>(FactorCheckpoints.consumerProperties(client));
        consumer = new KafkaConsumer<>(WorkerClients.consumer(config, client, instanceId));
        capturePartitions = consumer.partitionsFor(topics.captures(), IO_TIMEOUT).size();
        factorPartitions = consumer.partitionsFor(topics.factors(), IO_TIMEOUT).size();
        restorer = new LayerRestore(restoreConsumer, topics, capturePartitions, factorPartitions, budget, precision, IO_TIMEOUT);
        log.info("worker {} (transactional id {}) joining group {} on {} ({} partitions, {} runs known)", instanceId,
                transactionalId(), config.groupId(), topics.captures(), capturePartitions, runs.size());
        consumer.subscribe(List.of(topics.captures()), this);
    }

    private KafkaProducer<byte[], byte[]> newProducer() {
        return new KafkaProducer<>(WorkerClients.transactionalProducer(config, client, instanceId));
    }

    // ---------------------------------------------------------------- poll loop

    private void step() {
        runs.pollNow();
        resumeDeferred();
        ConsumerRecords<byte[], byte[]> records;
        try {
            records = consumer.poll(Duration.ofMillis(config.pollTimeoutMs()));
        } catch (WakeupException e) {
            return;
        } catch (ProducerFencedException | FencedInstanceIdException | AuthorizationException e) {
            throw e;
        } catch (KafkaException e) {
            // e.g. a restore inside onPartitionsAssigned timed out: rebuild every owned partition
            recover(e);
            return;
        }
        lastPollMillis = System.currentTimeMillis();
        try {
            for (TopicPartition tp : records.partitions()) {
                if (!assigned.contains(tp)) {
                    continue; // lost or reset inside this poll's callbacks
                }
                for (ConsumerRecord<byte[], byte[]> r : records.records(tp)) {
                    if (deferral.isPaused(tp) || !handle(r)) {
                        break;
                    }
                }
            }
            updateLag();
            Set<Integer> due = schedule.due(System.nanoTime(), layers::pendingFactorBytes);
            if (!due.isEmpty()) {
                checkpoint(due);
            }
        } catch (ProducerFencedException | FencedInstanceIdException | AuthorizationException e) {
            throw e;
        } catch (KafkaException e) {
            recover(e);
        }
    }

    private void updateLag() {
        double lag = 0;
        for (TopicPartition tp : assigned) {
            OptionalLong l = consumer.currentLag(tp);
            if (l.isPresent()) {
                lag += l.getAsLong();
            }
        }
        lagRecords = lag;
    }

    /** @return false when the rest of this partition's batch must wait (capture deferred). */
    private boolean handle(ConsumerRecord<byte[], byte[]> r) {
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        int size = r.value() == null ? 0 : r.value().length;
        CaptureValidator.Accepted ok;
        try {
            ok = validator.check(r.key(), r.value(), r.partition(), capturePartitions, runs::get);
        } catch (InvalidRecordException e) {
            if (e.reason() == RejectReason.UNKNOWN_RUN) {
                runs.catchUp(IO_TIMEOUT, RUNS_CATCH_UP_MIN_INTERVAL_MS);
                try {
                    ok = validator.check(r.key(), r.value(), r.partition(), capturePartitions, runs::get);
                } catch (InvalidRecordException again) {
                    if (again.reason() == RejectReason.UNKNOWN_RUN && defer(tp, r.offset())) {
                        return false;
                    }
                    reject(r, again, size);
                    return true;
                }
            } else {
                reject(r, e, size);
                return true;
            }
        }
        deferral.accepted(tp);
        metrics.inc("curvewatch_worker_bytes_total", size);
        Capture c = ok.capture();
        if (c.getProbe()) {
            metrics.inc("curvewatch_worker_records_total", 1, "result", "probe");
            advance(tp, r.offset());
            return true;
        }
        LayerFactors lf = layers.get(ok.key());
        int dIn = ok.layer().getDIn();
        int dOut = ok.layer().getDOut();
        if (lf == null) {
            String refusal = restorer.refusal(ok.key());
            if (refusal == null) {
                refusal = budget.refusal(ok.key(), dIn, dOut, layers.factorBytes());
            }
            if (refusal != null) {
                if (refusedLayers.add(ok.key())) {
                    log.warn("not accumulating {}: its captures are dead letters: {}", ok.key(), refusal);
                }
                reject(r, new InvalidRecordException(RejectReason.OVERSIZED, refusal), size);
                return true;
            }
            RunInfo run = ok.run();
            FactorMode mode = run.getFactorMode() == dev.curvewatch.avro.FactorMode.EMA ? FactorMode.EMA : FactorMode.CUMULATIVE;
            double decay = mode == FactorMode.EMA ? run.getEmaDecay() : 1.0;
            if (mode == FactorMode.EMA && !(decay > 0 && decay <= 1)) {
                reject(r, new InvalidRecordException(RejectReason.INVALID_FIELD, "run '" + run.getRunId()
                        + "' is registered with EMA decay " + decay + ", outside (0, 1]"), size);
                return true;
            }
            lf = LayerFactors.fresh(ok.key(), c.getRunId(), c.getLayer(), r.partition(), dIn, dOut, precision, mode, decay);
            layers.put(lf);
        } else if (lf.a.dim() != dIn || lf.g.dim() != dOut) {
            reject(r, new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "layer " + ok.key() + " has factors of d_in="
                    + lf.a.dim() + " d_out=" + lf.g.dim() + " from earlier captures; the run now registers d_in=" + dIn
                    + " d_out=" + dOut), size);
            return true;
        }
        int tokens = c.getActivations().getShape().get(0);
        long t0 = System.nanoTime();
        FloatBuffer a = staging.activations(c.getActivations());
        FloatBuffer g = staging.gradients(c.getGradients());
        lf.a.add(c.getStep(), a, tokens);
        lf.g.add(c.getStep(), g, tokens);
        long dt = System.nanoTime() - t0;
        double flops = 2.0 * tokens * ((double) dIn * dIn + (double) dOut * dOut);
        lf.captures++;
        lf.dirty = true;
        flopsSinceCheckpoint += flops;
        accumulateNanosSinceCheckpoint += dt;
        metrics.inc("curvewatch_worker_records_total", 1, "result", "accumulated");
        metrics.inc("curvewatch_worker_tokens_total", tokens);
        metrics.inc("curvewatch_worker_accumulate_flops_total", flops);
        metrics.inc("curvewatch_worker_accumulate_seconds_total", dt / 1e9);
        advance(tp, r.offset());
        schedule.accumulated(tp.partition(), size, tokens, System.nanoTime());
        return true;
    }

    private void advance(TopicPartition tp, long offset) {
        positions.put(tp, offset + 1);
        schedule.advanced(tp.partition(), System.nanoTime());
    }

    /** @return true if the capture's partition is paused on it, false if its grace period is over ({@link UnknownRunDeferral}) */
    private boolean defer(TopicPartition tp, long offset) {
        UnknownRunDeferral.Outcome outcome = deferral.unknownRun(tp, offset, System.currentTimeMillis());
        if (outcome == UnknownRunDeferral.Outcome.GRACE_OVER) {
            return false;
        }
        if (outcome == UnknownRunDeferral.Outcome.PAUSED_FIRST_TIME) {
            metrics.inc("curvewatch_worker_unknown_run_deferrals_total", 1);
        }
        consumer.seek(tp, offset);
        consumer.pause(List.of(tp));
        return true;
    }

    /** Resumes the partitions whose deferred capture is due for a retry, after re-reading the runs topic. */
    private void resumeDeferred() {
        if (deferral.paused() == 0) {
            return;
        }
        List<TopicPartition> ready = deferral.dueForRetry(System.currentTimeMillis());
        if (!ready.isEmpty()) {
            runs.catchUp(IO_TIMEOUT, 0);
            ready.retainAll(assigned);
            consumer.resume(ready);
        }
    }

    private void reject(ConsumerRecord<byte[], byte[]> r, InvalidRecordException e, int size) {
        ensureTransaction();
        DeadLetter dl = DeadLetters.of(r.topic(), r.partition(), r.offset(), r.key(), r.value(),
                config.deadLetterMaxValueBytes(), e, "worker:" + instanceId);
        producer.send(new ProducerRecord<>(topics.deadLetters(), r.key(), deadLetterSerializer.serialize(topics.deadLetters(), dl)));
        metrics.inc("curvewatch_worker_dead_letters_total", 1, "reason", e.reason().name());
        metrics.inc("curvewatch_worker_records_total", 1, "result", "dead_letter");
        metrics.inc("curvewatch_worker_bytes_total", size);
        log.debug("dead letter {}-{}@{}: {}", r.topic(), r.partition(), r.offset(), e.getMessage());
        advance(new TopicPartition(r.topic(), r.partition()), r.offset());
        schedule.deadLetter(r.partition(), System.nanoTime());
    }

    private void ensureTransaction() {
        if (!txnOpen) {
            producer.beginTransaction();
            txnOpen = true;
        }
    }

    // ---------------------------------------------------------------- checkpoints

    /** A checkpoint of every partition that advanced: before stopping or giving partitions up. */
    private void checkpointAll() {
        checkpoint(schedule.advanced());
    }

    /**
     * One transaction: chunks and manifest of every layer changed since the last checkpoint in
     * these captures partitions, the dead letters already sent in it (their partitions are among
     * these: {@link CheckpointSchedule#due}), and the offsets of these partitions. The others keep
     * their committed offsets and last checkpoints; their layers stay in memory, dirty.
     */
    private void checkpoint(Set<Integer> partitions) {
        long t0 = System.nanoTime();
        ensureTransaction();
        Map<LayerFactors, Long> written = new HashMap<>();
        long bytes = 0;
        for (LayerFactors lf : layers.changedIn(partitions)) {
            long version = lf.version + 1;
            int partition = lf.partition % factorPartitions;
            bytes += codec.write(new CheckpointCodec.Provenance(lf.runId, lf.layer, version, lf.captures, instanceId, codeVersion),
                    lf.a, lf.g, (key, value) -> producer.send(new ProducerRecord<>(topics.factors(), partition,
                            key.getBytes(StandardCharsets.UTF_8), value)));
            written.put(lf, version);
        }
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        positions.forEach((tp, pos) -> {
            if (assigned.contains(tp) && partitions.contains(tp.partition())) {
                offsets.put(tp, new OffsetAndMetadata(pos));
            }
        });
        if (!offsets.isEmpty()) {
            producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
        }
        commitWithRetry();
        written.forEach((lf, v) -> {
            lf.version = v;
            lf.dirty = false;
        });
        double seconds = (System.nanoTime() - t0) / 1e9;
        if (accumulateNanosSinceCheckpoint > 0) {
            double gflops = flopsSinceCheckpoint / accumulateNanosSinceCheckpoint;
            metrics.gauge("curvewatch_worker_accumulate_gflops", () -> gflops);
        }
        metrics.inc("curvewatch_worker_checkpoints_total", 1);
        metrics.inc("curvewatch_worker_checkpoint_seconds_total", seconds);
        metrics.inc("curvewatch_worker_checkpoint_bytes_total", bytes);
        metrics.gauge("curvewatch_worker_checkpoint_last_seconds", () -> seconds);
        if (!written.isEmpty()) {
            log.debug("checkpoint: {} layers, {} bytes, offsets {} in {} s", written.size(), bytes, offsets, seconds);
        }
        flopsSinceCheckpoint = 0;
        accumulateNanosSinceCheckpoint = 0;
        schedule.committed(partitions, System.nanoTime());
    }

    private void commitWithRetry() {
        for (int attempt = 1; ; attempt++) {
            try {
                producer.commitTransaction();
                txnOpen = false;
                return;
            } catch (TimeoutException e) {
                // commitTransaction may be retried after a timeout (broker briefly unreachable)
                if (attempt >= 4 || !running && attempt >= 2) {
                    throw e;
                }
                log.warn("commit timed out (attempt {}), retrying: {}", attempt, e.getMessage());
            }
        }
    }

    private void finalCheckpoint() {
        if (!schedule.anyAdvanced() && !txnOpen) {
            return;
        }
        try {
            checkpointAll();
            log.info("final checkpoint committed");
        } catch (KafkaException e) {
            log.warn("final checkpoint failed; the next owner resumes from the previous one: {}", e.toString());
        }
    }

    /**
     * A checkpoint or send failed: abort what is open (or replace a producer in a fatal state),
     * then rebuild every owned layer from the last committed checkpoint and offsets.
     */
    private void recover(KafkaException cause) {
        metrics.inc("curvewatch_worker_checkpoint_failures_total", 1);
        log.warn("rolling back to the last committed checkpoint after: {}", cause.toString());
        phase = "recovering";
        abortOrReplaceProducer();
        // the consumer's assignment, not ours: a partition whose restore failed is owned but not in `assigned`
        Set<TopicPartition> owned = new HashSet<>(consumer.assignment());
        owned.addAll(assigned);
        owned.retainAll(consumer.assignment());
        resetToCommitted(owned);
        phase = "running";
    }

    private void abortOrReplaceProducer() {
        if (txnOpen) {
            try {
                producer.abortTransaction();
            } catch (ProducerFencedException e) {
                throw e;
            } catch (KafkaException | IllegalStateException e) {
                // IllegalStateException: a commitTransaction timed out (broker away) and Kafka allows only retrying it;
                // the replacement's initTransactions completes or aborts that transaction, and the rollback then reads
                // whichever offsets it left committed
                log.warn("abort failed ({}); replacing the producer", e.toString());
                producer.close(Duration.ZERO);
                producer = newProducer();
                initTransactionsWithRetry();
            }
            txnOpen = false;
        }
    }

    private void initTransactionsWithRetry() {
        for (int attempt = 1; ; attempt++) {
            try {
                producer.initTransactions();
                return;
            } catch (TimeoutException e) {
                // nothing can be committed without a producer: keep trying while the broker is away
                if (!running) {
                    throw e;
                }
                log.warn("initTransactions timed out (attempt {}), retrying", attempt);
            }
        }
    }

    /** Drops the in-memory state of these partitions, seeks them to their committed offsets and restores their layers. */
    private void resetToCommitted(Set<TopicPartition> parts) {
        drop(parts);
        if (parts.isEmpty()) {
            return;
        }
        for (int attempt = 1; ; attempt++) {
            try {
                Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(parts, IO_TIMEOUT);
                for (TopicPartition tp : parts) {
                    OffsetAndMetadata om = committed.get(tp);
                    if (om == null) {
                        consumer.seekToBeginning(List.of(tp));
                    } else {
                        consumer.seek(tp, om.offset());
                    }
                }
                restore(parts);
                assigned.addAll(parts);
                refreshOwnership();
                return;
            } catch (TimeoutException e) {
                drop(parts);
                if (attempt >= 10) {
                    throw e;
                }
                log.warn("reset to committed state timed out (attempt {}), retrying", attempt);
            }
        }
    }

    // ---------------------------------------------------------------- rebalance

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> parts) {
        metrics.inc("curvewatch_worker_rebalances_total", 1, "kind", "revoked");
        if (parts.isEmpty()) {
            return;
        }
        if (schedule.anyAdvanced() || txnOpen) {
            try {
                checkpointAll();
            } catch (ProducerFencedException e) {
                throw e;
            } catch (KafkaException e) {
                log.warn("checkpoint before giving up partitions failed: {}", e.toString());
                abortOrReplaceProducer();
                Set<TopicPartition> keep = new HashSet<>(assigned);
                keep.removeAll(parts);
                drop(new HashSet<>(parts));
                resetToCommitted(keep);
                refreshOwnership();
                return;
            }
        }
        drop(new HashSet<>(parts));
        refreshOwnership();
        log.info("revoked {}", parts);
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> parts) {
        metrics.inc("curvewatch_worker_rebalances_total", 1, "kind", "lost");
        // the open transaction may hold dead letters of lost partitions: abort it and rebuild the rest
        Set<TopicPartition> keep = new HashSet<>(assigned);
        keep.removeAll(parts);
        abortOrReplaceProducer();
        drop(new HashSet<>(parts));
        resetToCommitted(keep);
        refreshOwnership();
        log.warn("lost {}", parts);
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> parts) {
        metrics.inc("curvewatch_worker_rebalances_total", 1, "kind", "assigned");
        if (parts.isEmpty()) {
            return;
        }
        Set<TopicPartition> set = new HashSet<>(parts);
        restore(set);
        assigned.addAll(set);
        refreshOwnership();
        log.info("assigned {} ({} layers restored in all)", parts, layers.count());
    }

    private void drop(Set<TopicPartition> parts) {
        Set<Integer> ids = new HashSet<>();
        for (TopicPartition tp : parts) {
            ids.add(tp.partition());
            schedule.forget(tp.partition());
            positions.remove(tp);
            if (deferral.forget(tp)) {
                try {
                    consumer.resume(List.of(tp));
                } catch (IllegalStateException ignored) {
                    // no longer assigned
                }
            }
        }
        layers.drop(ids);
        restorer.forget(ids);
        assigned.removeAll(parts);
    }

    /** Loads the newest checkpoint of every layer whose captures live in these partitions ({@link LayerRestore}). */
    private void restore(Set<TopicPartition> parts) {
        phase = "restoring";
        restorer.restore(parts, layers::factorBytes, lf -> {
            layers.put(lf);
            metrics.inc("curvewatch_worker_restores_total", 1);
        });
        phase = "running";
    }

    private void refreshOwnership() {
        ownedPartitions = assigned.size();
    }

    private void closeAll() {
        Iterator<AutoCloseable> it = new ArrayList<AutoCloseable>(java.util.Arrays.asList(
                consumer == null ? null : (AutoCloseable) () -> consumer.close(CloseOptions.timeout(Duration.ofSeconds(10))
                        .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)),
                restoreConsumer == null ? null : (AutoCloseable) () -> restoreConsumer.close(Duration.ofSeconds(5)),
                runs,
                producer == null ? null : (AutoCloseable) () -> producer.close(Duration.ofSeconds(10)))).iterator();
        while (it.hasNext()) {
            AutoCloseable c = it.next();
            if (c == null) {
                continue;
            }
            try {
                c.close();
            } catch (Exception e) {
                log.debug("close: {}", e.toString());
            }
        }
    }
}
