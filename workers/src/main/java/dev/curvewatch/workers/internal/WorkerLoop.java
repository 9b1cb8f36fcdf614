package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.contracts.CheckpointCodec;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.FactorMode;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.DeadLetters;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.workers.WorkerConfig;
import dev.curvewatch.workers.WorkerMetrics;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.ByteBuffer;
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

    private final Map<String, LayerFactors> layers = new HashMap<>();
    private final Set<TopicPartition> assigned = new HashSet<>();
    /** Next offset to commit per partition: one past the last record whose effect is in memory. */
    private final Map<TopicPartition, Long> positions = new HashMap<>();
    /** Partitions paused on a capture of a not-yet-registered run: offset, first seen, retry time. */
    private final Map<TopicPartition, long[]> deferred = new HashMap<>();
    private boolean txnOpen;
    private final CheckpointSchedule schedule;
    private final FactorBudget budget;
    private double flopsSinceCheckpoint;
    private long accumulateNanosSinceCheckpoint;

    private volatile boolean running = true;
    private volatile long lastPollMillis;
    private volatile double lagRecords;
    private volatile int ownedLayers;
    private volatile long ownedFactorBytes;
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
        metrics.gauge("curvewatch_worker_lag_records", () -> lagRecords);
        metrics.gauge("curvewatch_worker_owned_layers", () -> ownedLayers);
        metrics.gauge("curvewatch_worker_owned_partitions", () -> ownedPartitions);
        metrics.gauge("curvewatch_worker_factor_bytes", () -> ownedFactorBytes);
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
        return ownedLayers;
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
        return "curvewatch-worker-" + config.groupId() + "-" + instanceId;
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
        consumer = new KafkaConsumer<>(consumerProperties());
        capturePartitions = consumer.partitionsFor(topics.captures(), IO_TIMEOUT).size();
        factorPartitions = consumer.partitionsFor(topics.factors(), IO_TIMEOUT).size();
        log.info("worker {} (transactional id {}) joining group {} on {} ({} partitions, {} runs known)", instanceId,
                transactionalId(), config.groupId(), topics.captures(), capturePartitions, runs.size());
        consumer.subscribe(List.of(topics.captures()), this);
    }

    private Properties consumerProperties() {
        Properties p = new Properties();
        p.putAll(client);
        p.setProperty(ConsumerConfig.GROUP_ID_CONFIG, config.groupId());
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Integer.toString(config.maxPollRecords()));
        p.setProperty(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES + (1 << 20)));
        p.putIfAbsent(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(2 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.putIfAbsent(ConsumerConfig.CLIENT_ID_CONFIG, "curvewatch-worker-" + instanceId);
        if (config.staticMembership()) {
            // a restarted instance (same id) takes its partitions back at once, without a rebalance
            // and without waiting for the killed member's session to expire
            p.setProperty(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        }
        p.setProperty(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.setProperty(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    private KafkaProducer<byte[], byte[]> newProducer() {
        Properties p = new Properties();
        p.putAll(client);
        p.setProperty(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId());
        p.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.putIfAbsent(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(1 << 20));
        p.putIfAbsent(ProducerConfig.BUFFER_MEMORY_CONFIG, Integer.toString(64 << 20));
        p.putIfAbsent(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "60000");
        p.putIfAbsent(ProducerConfig.CLIENT_ID_CONFIG, "curvewatch-worker-" + instanceId + "-tx");
        p.setProperty(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.setProperty(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return new KafkaProducer<>(p);
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
                    if (deferred.containsKey(tp) || !handle(r)) {
                        break;
                    }
                }
            }
            updateLag();
            Set<Integer> due = schedule.due(System.nanoTime(), this::pendingFactorBytes);
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
        unknownSince.remove(tp);
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
            String refusal = unrestored.getOrDefault(ok.key(), budget.refusal(ok.key(), dIn, dOut, ownedFactorBytes));
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
            layers.put(ok.key(), lf);
            refreshOwnership();
        } else if (lf.a.dim() != dIn || lf.g.dim() != dOut) {
            reject(r, new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "layer " + ok.key() + " has factors of d_in="
                    + lf.a.dim() + " d_out=" + lf.g.dim() + " from earlier captures; the run now registers d_in=" + dIn
                    + " d_out=" + dOut), size);
            return true;
        }
        int tokens = c.getActivations().getShape().get(0);
        long t0 = System.nanoTime();
        FloatBuffer a = staged(c.getActivations(), 0);
        FloatBuffer g = staged(c.getGradients(), 1);
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

    /** Layers refused by the budget, logged once each (every capture of theirs is still a dead letter). */
    private final Set<String> refusedLayers = new HashSet<>();
    /**
     * Layers whose checkpoint was over the budget at restore, with the reason: refused for as long as
     * this worker owns their partition, so that budget freed later never starts them again from zero
     * under an older version than their checkpoint's.
     */
    private final Map<String, String> unrestored = new HashMap<>();

    /** Two reusable direct buffers (activations, gradients), grown to the largest capture seen. */
    private final ByteBuffer[] staging = new ByteBuffer[2];

    /**
     * The tensor's floats in a direct native-order buffer: one bulk memcpy, after which BLAS reads
     * them without another copy and the finiteness scan runs on plain memory instead of a
     * byte-order-converting heap view.
     */
    private FloatBuffer staged(dev.curvewatch.avro.Tensor t, int slot) {
        ByteBuffer src = t.getData().duplicate();
        if (java.nio.ByteOrder.nativeOrder() != java.nio.ByteOrder.LITTLE_ENDIAN) {
            return TensorCodec.floats(t, slot == 0 ? "activations" : "gradients");
        }
        int n = src.remaining();
        ByteBuffer dst = staging[slot];
        if (dst == null || dst.capacity() < n) {
            dst = ByteBuffer.allocateDirect(Math.max(n, 1 << 16)).order(java.nio.ByteOrder.nativeOrder());
            staging[slot] = dst;
        }
        dst.clear();
        dst.put(src);
        dst.flip();
        return dst.asFloatBuffer();
    }

    private void advance(TopicPartition tp, long offset) {
        positions.put(tp, offset + 1);
        schedule.advanced(tp.partition(), System.nanoTime());
    }

    /** offset and first time a capture of an unknown run was seen, per partition */
    private final Map<TopicPartition, long[]> unknownSince = new HashMap<>();

    /**
     * Policy for a capture whose run is not (yet) registered: the trainer may publish its RunInfo
     * a moment after the first captures, so the partition is paused at that capture and retried
     * (after re-reading the runs topic) until {@code unknown.run.grace.ms} has passed since it was
     * first seen; then it is dead-lettered as UNKNOWN_RUN. Other partitions keep flowing.
     *
     * @return true if deferred, false if the grace period is over
     */
    private boolean defer(TopicPartition tp, long offset) {
        long now = System.currentTimeMillis();
        long[] seen = unknownSince.get(tp);
        if (seen == null || seen[0] != offset) {
            seen = new long[]{offset, now};
            unknownSince.put(tp, seen);
        }
        if (now - seen[1] >= config.unknownRunGraceMs()) {
            unknownSince.remove(tp);
            return false;
        }
        consumer.seek(tp, offset);
        consumer.pause(List.of(tp));
        deferred.put(tp, new long[]{offset, Math.min(seen[1] + config.unknownRunGraceMs(), now + 250)});
        return true;
    }

    private void resumeDeferred() {
        if (deferred.isEmpty()) {
            return;
        }
        long now = System.currentTimeMillis();
        List<TopicPartition> ready = new ArrayList<>();
        for (Map.Entry<TopicPartition, long[]> e : deferred.entrySet()) {
            if (e.getValue()[1] <= now) {
                ready.add(e.getKey());
            }
        }
        if (!ready.isEmpty()) {
            runs.catchUp(IO_TIMEOUT, 0);
            ready.forEach(deferred::remove);
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

    /** Factor bytes a checkpoint of this captures partition would write: its changed layers. */
    private long pendingFactorBytes(int partition) {
        long bytes = 0;
        for (LayerFactors lf : layers.values()) {
            if (lf.dirty && lf.partition == partition) {
                bytes += lf.factorBytes();
            }
        }
        return bytes;
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
        ensureTransaction();
        Map<LayerFactors, Long> written = new HashMap<>();
        long bytes = 0;
        for (LayerFactors lf : layers.values()) {
            if (!lf.dirty || !partitions.contains(lf.partition)) {
                continue;
            }
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
        log.info("assigned {} ({} layers restored in all)", parts, layers.size());
    }

    private void drop(Set<TopicPartition> parts) {
        Set<Integer> ids = new HashSet<>();
        for (TopicPartition tp : parts) {
            ids.add(tp.partition());
            schedule.forget(tp.partition());
            positions.remove(tp);
            unknownSince.remove(tp);
            if (deferred.remove(tp) != null) {
                try {
                    consumer.resume(List.of(tp));
                } catch (IllegalStateException ignored) {
                    // no longer assigned
                }
            }
        }
        layers.values().removeIf(lf -> ids.contains(lf.partition));
        unrestored.keySet().removeIf(key -> ids.contains(CaptureValidator.partitionForKey(key, capturePartitions)));
        assigned.removeAll(parts);
    }

    /** Loads the newest checkpoint of every layer whose captures live in these partitions. */
    private void restore(Set<TopicPartition> parts) {
        phase = "restoring";
        Set<Integer> ids = new HashSet<>();
        Set<TopicPartition> factorParts = new HashSet<>();
        for (TopicPartition tp : parts) {
            ids.add(tp.partition());
            factorParts.add(new TopicPartition(topics.factors(), tp.partition() % factorPartitions));
        }
        long t0 = System.nanoTime();
        Map<String, FactorCheckpoint> found = FactorCheckpoints.scan(restoreConsumer, factorParts,
                runLayer -> ids.contains(CaptureValidator.partitionForKey(runLayer, capturePartitions)), IO_TIMEOUT);
        for (Map.Entry<String, FactorCheckpoint> e : found.entrySet()) {
            FactorCheckpoint cp = e.getValue();
            String refusal = budget.refusal(e.getKey(), cp.manifest().getDIn(), cp.manifest().getDOut(), ownedFactorBytes);
            if (refusal != null) {
                // not taken on: the layer's later captures become dead letters, as for a layer first seen now
                log.warn("not restoring {}: {}", e.getKey(), refusal);
                unrestored.put(e.getKey(), "its checkpoint (version " + cp.version() + ") could not be restored: " + refusal);
                continue;
            }
            FactorAccumulator a = FactorAccumulator.restore(cp.a());
            FactorAccumulator g = FactorAccumulator.restore(cp.g());
            if (a.precision() != precision) {
                log.warn("layer {} was checkpointed in {}, this worker is configured for {}; continuing in {}",
                        e.getKey(), a.precision(), precision, a.precision());
            }
            int partition = CaptureValidator.partitionForKey(e.getKey(), capturePartitions);
            layers.put(e.getKey(), new LayerFactors(e.getKey(), cp.runId(), cp.layer(), partition, a, g, cp.version(),
                    cp.manifest().getCaptures()));
            refreshOwnership();
            metrics.inc("curvewatch_worker_restores_total", 1);
        }
        if (!found.isEmpty()) {
            log.info("restored {} layers of partitions {} in {} ms", found.size(), ids, (System.nanoTime() - t0) / 1_000_000);
        }
        phase = "running";
    }

    private void refreshOwnership() {
        ownedLayers = layers.size();
        ownedPartitions = assigned.size();
        long bytes = 0;
        for (LayerFactors lf : layers.values()) {
            bytes += lf.factorBytes();
        }
        ownedFactorBytes = bytes;
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
