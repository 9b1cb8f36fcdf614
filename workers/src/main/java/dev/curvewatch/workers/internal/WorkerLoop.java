package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.contracts.CheckpointCodec;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.DeadLetters;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.workers.WorkerConfig;
import dev.curvewatch.workers.WorkerMetrics;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.WakeupException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The single poll thread of a worker and its transaction core: validate, accumulate, checkpoint,
 * roll back, and the rebalance callbacks. All Kafka clients are used from this thread only; other
 * threads read metrics and ask it to stop.
 *
 * <p>Consistency rule: the in-memory accumulators always equal "last committed checkpoint +
 * every accepted capture between the committed offsets and the positions ({@link HeldPartitions})".
 * A checkpoint commits chunks, manifests, dead letters and offsets in one transaction; any failure
 * of it drops the in-memory state of the affected partitions and rebuilds it from the last
 * committed checkpoint and offsets, so nothing is counted twice or lost. Every path that touches
 * the transaction is here; the rest lives in classes of its own: {@link CaptureAdmission} (with
 * {@link UnknownRunDeferral}), {@link LayerAccumulation}, {@link CheckpointWriter},
 * {@link TransactionalProducer}, {@link LayerRestore}, {@link HeldPartitions}, {@link OwnedLayers},
 * {@link WorkerClients}, {@link CheckpointSchedule} and {@link FactorBudget}.
 *
 * <p>Over 400 lines with its comments: it is that transaction core, kept whole on purpose (every
 * commit, rollback and rebalance path in one place is what makes the rule above checkable).
 */
public final class WorkerLoop implements ConsumerRebalanceListener {
    private static final Logger log = LoggerFactory.getLogger(WorkerLoop.class);
    private static final Duration IO_TIMEOUT = Duration.ofSeconds(30);

    private final WorkerConfig config;
    private final WorkerMetrics metrics;
    private final CurvewatchTopics topics;
    private final String instanceId;
    private final AvroSerializer<DeadLetter> deadLetterSerializer = new AvroSerializer<>(DeadLetter.class);
    private final Precision precision;

    private final String codeVersion;
    private WorkerClients clients;
    private KafkaConsumer<byte[], byte[]> consumer;
    private TransactionalProducer producer;
    private RunRegistry runs;
    private CaptureAdmission admission;
    private LayerRestore restorer;
    private CheckpointWriter writer;

    private final OwnedLayers layers = new OwnedLayers();
    private final HeldPartitions held = new HeldPartitions();
    private final UnknownRunDeferral deferral;
    private final CheckpointSchedule schedule;
    private final FactorBudget budget;
    private final LayerAccumulation accumulation;

    private volatile boolean running = true;
    private volatile long lastPollMillis;
    private volatile String phase = "starting";

    public WorkerLoop(WorkerConfig config, WorkerMetrics metrics, String codeVersion) {
        this.config = config;
        this.metrics = metrics;
        this.topics = config.topics();
        this.instanceId = config.instanceId();
        this.precision = config.precision();
        this.codeVersion = codeVersion;
        this.budget = new FactorBudget(config.maxLayerSide(), config.factorsMemoryBudgetBytes(), precision);
        this.schedule = new CheckpointSchedule(config.checkpointIntervalMs(), config.checkpointMaxIntervalMs(),
                config.checkpointCaptureRatio(), config.checkpointTokens());
        this.deferral = new UnknownRunDeferral(config.unknownRunGraceMs());
        this.accumulation = new LayerAccumulation(layers, budget, precision, metrics);
        metrics.gauge("curvewatch_worker_lag_records", held::lag);
        metrics.gauge("curvewatch_worker_owned_layers", layers::count);
        metrics.gauge("curvewatch_worker_owned_partitions", held::count);
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
        return held.count();
    }

    public int ownedLayers() {
        return layers.count();
    }

    public double lagRecords() {
        return held.lag();
    }

    /** Asks the loop to finish: it writes a final checkpoint and leaves the group. */
    public void requestStop() {
        running = false;
        KafkaConsumer<byte[], byte[]> c = consumer;
        if (c != null) {
            c.wakeup();
        }
    }

    /** Runs until {@link #requestStop()}; throws on a fatal error (another instance with our id, no rights, corrupt checkpoint). */
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
        clients = new WorkerClients(config, () -> running, IO_TIMEOUT);
        producer = clients.producer;
        runs = clients.runs;
        consumer = clients.consumer;
        int capturePartitions = consumer.partitionsFor(topics.captures(), IO_TIMEOUT).size();
        int factorPartitions = consumer.partitionsFor(topics.factors(), IO_TIMEOUT).size();
        restorer = new LayerRestore(clients.restoreConsumer, topics, capturePartitions, factorPartitions, budget, precision,
                IO_TIMEOUT);
        admission = new CaptureAdmission(new CaptureValidator(config.maxRecordBytes()), deferral, runs, consumer,
                capturePartitions, metrics, IO_TIMEOUT);
        writer = new CheckpointWriter(new CheckpointCodec(config.chunkBytes()), topics.factors(), factorPartitions, instanceId,
                codeVersion);
        log.info("worker {} (transactional id {}) joining group {} on {} ({} partitions, {} runs known)", instanceId,
                WorkerClients.transactionalId(config, instanceId), config.groupId(), topics.captures(), capturePartitions, runs.size());
        consumer.subscribe(List.of(topics.captures()), this);
    }

    private void step() {
        runs.pollNow();
        admission.resumeDue(held.all());
        ConsumerRecords<byte[], byte[]> records;
        try {
            records = consumer.poll(Duration.ofMillis(config.pollTimeoutMs()));
        } catch (WakeupException e) {
            return;
        } catch (KafkaException e) {
            // e.g. a restore inside onPartitionsAssigned timed out: rebuild every owned partition
            recover(e);
            return;
        }
        lastPollMillis = System.currentTimeMillis();
        try {
            for (TopicPartition tp : records.partitions()) {
                if (!held.contains(tp)) {
                    continue; // lost or reset inside this poll's callbacks
                }
                for (ConsumerRecord<byte[], byte[]> r : records.records(tp)) {
                    if (admission.isPaused(tp) || !handle(r)) {
                        break;
                    }
                }
            }
            held.measureLag(consumer);
            Set<Integer> due = schedule.due(System.nanoTime(), layers::pendingFactorBytes);
            if (!due.isEmpty()) {
                checkpoint(due);
            }
        } catch (KafkaException e) {
            recover(e);
        }
    }

    /**
     * Whether this error ends the worker: another instance with our id in the group, or no rights.
     * A fenced producer alone is not: the producer is replaced and the state rolled back, since the
     * transaction coordinator can bump our epoch without another worker (the group tells a real one).
     */
    static boolean isFatal(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof FencedInstanceIdException || t instanceof AuthorizationException) {
                return true;
            }
        }
        return false;
    }

    /** @return false when the rest of this partition's batch must wait (capture deferred). */
    private boolean handle(ConsumerRecord<byte[], byte[]> r) {
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        int size = r.value() == null ? 0 : r.value().length;
        try {
            CaptureValidator.Accepted ok = admission.admit(r);
            if (ok == null) {
                return false;
            }
            metrics.inc("curvewatch_worker_bytes_total", size);
            if (ok.capture().getProbe()) {
                metrics.inc("curvewatch_worker_records_total", 1, "result", "probe");
                advance(tp, r.offset());
                return true;
            }
            int tokens = accumulation.add(ok, r.partition(), restorer::refusal);
            advance(tp, r.offset());
            schedule.accumulated(tp.partition(), size, tokens, System.nanoTime());
        } catch (InvalidRecordException e) {
            reject(r, e, size);
        }
        return true;
    }

    private void advance(TopicPartition tp, long offset) {
        held.advanced(tp, offset);
        schedule.advanced(tp.partition(), System.nanoTime());
    }

    private void reject(ConsumerRecord<byte[], byte[]> r, InvalidRecordException e, int size) {
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
        producer.begin();
        CheckpointWriter.Written written = writer.write(layers.changedIn(partitions), producer);
        Map<TopicPartition, OffsetAndMetadata> offsets = held.offsets(partitions);
        if (!offsets.isEmpty()) {
            producer.sendOffsets(offsets, consumer.groupMetadata());
        }
        producer.commit();
        written.committed();
        double seconds = (System.nanoTime() - t0) / 1e9;
        accumulation.checkpointed();
        metrics.inc("curvewatch_worker_checkpoints_total", 1);
        metrics.inc("curvewatch_worker_checkpoint_seconds_total", seconds);
        metrics.inc("curvewatch_worker_checkpoint_bytes_total", written.bytes());
        metrics.gauge("curvewatch_worker_checkpoint_last_seconds", () -> seconds);
        if (!written.versions().isEmpty()) {
            log.debug("checkpoint: {} layers, {} bytes, offsets {} in {} s", written.versions().size(), written.bytes(), offsets,
                    seconds);
        }
        schedule.committed(partitions, System.nanoTime());
    }

    private void finalCheckpoint() {
        if (!schedule.anyAdvanced() && !producer.isOpen()) {
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
        if (isFatal(cause)) {
            throw cause;
        }
        metrics.inc("curvewatch_worker_checkpoint_failures_total", 1);
        log.warn("rolling back to the last committed checkpoint after: {}", cause.toString());
        phase = "recovering";
        producer.abortOrReplace();
        // the consumer's assignment, not ours: a partition whose restore failed is owned but not held
        Set<TopicPartition> owned = new HashSet<>(consumer.assignment());
        owned.addAll(held.all());
        owned.retainAll(consumer.assignment());
        resetToCommitted(owned);
        phase = "running";
    }

    /** Drops the in-memory state of these partitions, seeks them to their committed offsets and restores their layers. */
    private void resetToCommitted(Set<TopicPartition> parts) {
        drop(parts);
        if (parts.isEmpty()) {
            return;
        }
        for (int attempt = 1; ; attempt++) {
            try {
                clients.seekToCommitted(parts, IO_TIMEOUT);
                restore(parts);
                held.add(parts);
                held.publish();
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

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> parts) {
        metrics.inc("curvewatch_worker_rebalances_total", 1, "kind", "revoked");
        if (parts.isEmpty()) {
            return;
        }
        if (schedule.anyAdvanced() || producer.isOpen()) {
            try {
                checkpointAll();
            } catch (KafkaException e) {
                if (isFatal(e)) {
                    throw e;
                }
                log.warn("checkpoint before giving up partitions failed: {}", e.toString());
                giveUpAndRollBack(parts);
                return;
            }
        }
        drop(new HashSet<>(parts));
        held.publish();
        log.info("revoked {}", parts);
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> parts) {
        metrics.inc("curvewatch_worker_rebalances_total", 1, "kind", "lost");
        // the open transaction may hold dead letters of lost partitions: abort it and rebuild the rest
        giveUpAndRollBack(parts);
        log.warn("lost {}", parts);
    }

    /** Aborts the open transaction, drops these partitions and rebuilds the others from the last committed checkpoint. */
    private void giveUpAndRollBack(Collection<TopicPartition> parts) {
        Set<TopicPartition> keep = new HashSet<>(held.all());
        keep.removeAll(parts);
        producer.abortOrReplace();
        drop(new HashSet<>(parts));
        resetToCommitted(keep);
        held.publish();
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> parts) {
        metrics.inc("curvewatch_worker_rebalances_total", 1, "kind", "assigned");
        if (parts.isEmpty()) {
            return;
        }
        Set<TopicPartition> set = new HashSet<>(parts);
        restore(set);
        held.add(set);
        held.publish();
        log.info("assigned {} ({} layers restored in all)", parts, layers.count());
    }

    private void drop(Set<TopicPartition> parts) {
        Set<Integer> ids = new HashSet<>();
        for (TopicPartition tp : parts) {
            ids.add(tp.partition());
            schedule.forget(tp.partition());
            admission.forget(tp);
        }
        layers.drop(ids);
        restorer.forget(ids);
        held.remove(parts);
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

    private void closeAll() {
        if (clients != null) {
            clients.close();
        }
    }
}
