package dev.curvewatch.service.internal;

import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.SnapshotStatus;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.service.ServiceConfig;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * The edit-requests consumer (group {@code edit.group.id}): each request becomes one edited
 * safetensors snapshot and a SnapshotEvent, or a dead letter with the reason; its offset is
 * committed only after that. Idempotent: a key already answered (the snapshots topic, read at
 * start, or this thread's own answers) is skipped, and the snapshot id derives from run and key,
 * so a request handled again after a crash rewrites the same file. Waits for the ingest
 * catch-up first, so the answered keys, weights and bases are known. Its own thread: the edit
 * math never runs on the Vert.x event loop.
 *
 * <p>No record can stop it: a request that breaks an expectation (including an unexpected
 * exception) ends in a FAILED SnapshotEvent with the reason (when it names a run and a key: the
 * caller reads why there) and a dead letter, and the thread goes on with the next. A FAILED event
 * does not answer its key: the same request sent again once the layer is ready is served. Records are
 * handled partition by partition; a record that must be retried (its SnapshotEvent was not
 * acknowledged, or its eigenbasis is still being computed) rewinds and pauses its own partition
 * only, and the other partitions of the same poll are still handled and committed.
 */
public final class EditRequests extends ConsumerLoop {
    private static final Logger LOG = LoggerFactory.getLogger(EditRequests.class);
    private static final int STORE_ATTEMPTS = 3;

    private final ServiceConfig config;
    private final Registry registry;
    private final Outputs out;
    private final ServiceMetrics metrics;
    private final SnapshotStore store;
    private final AvroDeserializer<EditRequest> decoder = new AvroDeserializer<>(EditRequest.class);

    private final RunOwnership ownership;
    private final java.util.function.ToLongFunction<TopicPartition> snapshotsRead;

    /**
     * @param ownership     told the partitions this instance is assigned (the runs it owns)
     * @param snapshotsRead how far the ingest thread has read a partition of the snapshots topic
     */
    public EditRequests(ServiceConfig config, Registry registry, Outputs out, ServiceMetrics metrics, SnapshotStore store,
                        RunOwnership ownership, java.util.function.ToLongFunction<TopicPartition> snapshotsRead) {
        this(config, registry, out, metrics, store, consumer(config, out.component()), ownership, snapshotsRead);
    }

    /** Over any consumer (tests use Kafka's MockConsumer). */
    EditRequests(ServiceConfig config, Registry registry, Outputs out, ServiceMetrics metrics, SnapshotStore store,
                 Consumer<byte[], byte[]> consumer) {
        this(config, registry, out, metrics, store, consumer, RunOwnership.everything(), tp -> Long.MAX_VALUE);
    }

    private EditRequests(ServiceConfig config, Registry registry, Outputs out, ServiceMetrics metrics, SnapshotStore store,
                         Consumer<byte[], byte[]> consumer, RunOwnership ownership,
                         java.util.function.ToLongFunction<TopicPartition> snapshotsRead) {
        super("edit-request", consumer);
        this.ownership = ownership;
        this.snapshotsRead = snapshotsRead;
        this.config = config;
        this.registry = registry;
        this.out = out;
        this.metrics = metrics;
        this.store = store;
    }

    private static KafkaConsumer<byte[], byte[]> consumer(ServiceConfig config, String component) {
        Properties p = new Properties();
        p.putAll(config.kafkaProperties());
        p.setProperty(ConsumerConfig.GROUP_ID_CONFIG, config.editGroupId());
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.putIfAbsent(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "8");
        p.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, component + "-edits");
        // the group's assignment is which instance owns which runs (RunOwnership): a killed instance's runs move
        // after session.timeout.ms (Kafka's default, 45 s, is longer than a takeover may take), and a rebalance
        // moves only the partitions that change owner
        p.putIfAbsent(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        p.putIfAbsent(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "2000");
        p.putIfAbsent(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                org.apache.kafka.clients.consumer.CooperativeStickyAssignor.class.getName());
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    @Override
    protected void loop() throws InterruptedException {
        while (!stopping() && !registry.awaitCaughtUp(Duration.ofMillis(200))) {
            polled();
        }
        String topic = config.topics().editRequests();
        ownership.partitions(consumer.partitionsFor(topic, Duration.ofSeconds(60)).size());
        consumer.subscribe(List.of(topic), new org.apache.kafka.clients.consumer.ConsumerRebalanceListener() {
            @Override
            public void onPartitionsAssigned(java.util.Collection<TopicPartition> assigned) {
                if (!assigned.isEmpty()) {
                    awaitSnapshotsRead();
                }
                ownership.onPartitionsAssigned(assigned);
            }

            @Override
            public void onPartitionsRevoked(java.util.Collection<TopicPartition> revoked) {
                ownership.onPartitionsRevoked(revoked);
            }

            @Override
            public void onPartitionsLost(java.util.Collection<TopicPartition> lost) {
                ownership.onPartitionsLost(lost);
            }
        });
        while (!stopping()) {
            resumeDue();
            ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(config.pollTimeoutMs()));
            polled();
            for (TopicPartition tp : records.partitions()) {
                for (ConsumerRecord<byte[], byte[]> r : records.records(tp)) {
                    if (!handleOrRewind(r)) {
                        break; // this partition was rewound to r: the rest of its batch comes again
                    }
                    consumer.commitSync(Map.of(tp, new OffsetAndMetadata(r.offset() + 1)));
                }
            }
        }
    }

    /**
     * Before serving the requests of runs taken over: the ingest thread has read every SnapshotEvent
     * published so far (the previous owner's answers included), so a request it answered but did not
     * commit is recognised as answered, not served twice. Bounded: after {@code edit.wait.ms} it goes
     * on (the snapshot id derives from run and key, so a second answer rewrites the same file).
     */
    private void awaitSnapshotsRead() {
        List<TopicPartition> parts = consumer.partitionsFor(config.topics().snapshots(), Duration.ofSeconds(30)).stream()
                .map(pi -> new TopicPartition(pi.topic(), pi.partition())).toList();
        Map<TopicPartition, Long> ends = consumer.endOffsets(parts, Duration.ofSeconds(30));
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(config.editWaitMs());
        while (!stopping() && System.nanoTime() < deadline
                && !ends.entrySet().stream().allMatch(e -> snapshotsRead.applyAsLong(e.getKey()) >= e.getValue())) {
            polled();
            try {
                Thread.sleep(20); // the ingest thread's progress; no event to wait on
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /**
     * Handles one request; false if it must be retried (a SnapshotEvent was not acknowledged, or
     * the eigenbasis is still being computed) and its partition was rewound to it. A request that
     * cannot be served ends in a FAILED SnapshotEvent with the reason, which the caller can read,
     * and a dead letter.
     */
    private boolean handleOrRewind(ConsumerRecord<byte[], byte[]> r) {
        EditRequest req = null;
        try {
            req = parse(r);
            if (req != null) {
                serve(req);
            }
            waiting.remove(new TopicPartition(r.topic(), r.partition()));
            return true;
        } catch (InvalidRecordException e) {
            return refuse(r, req, e);
        } catch (EventNotPublished e) {
            LOG.warn("snapshot event not acknowledged, will retry {} p{}@{}: {}", r.topic(), r.partition(), r.offset(), e.getMessage());
            backOff(r);
            return false;
        } catch (EditPlan.BasesPending e) {
            long now = System.currentTimeMillis();
            TopicPartition tp = new TopicPartition(r.topic(), r.partition());
            Waiting w = waiting.get(tp);
            if (w == null || w.offset() != r.offset()) {
                w = new Waiting(r.offset(), now);
                waiting.put(tp, w);
            }
            if (now - w.sinceMs() < config.editWaitMs()) {
                backOff(r);
                return false;
            }
            return refuse(r, req, new InvalidRecordException(RejectReason.NOT_READY, e.getMessage() + " for more than "
                    + config.editWaitMs() + " ms"));
        } catch (RuntimeException e) {
            // a request the checks did not foresee: retrying it would fail again (and after every restart)
            LOG.error("edit request {} p{}@{} failed unexpectedly", r.topic(), r.partition(), r.offset(), e);
            return refuse(r, req, new InvalidRecordException(RejectReason.MALFORMED, "could not be served: " + e, e));
        }
    }

    /**
     * A request that cannot be served: a FAILED SnapshotEvent with the reason when the request
     * names a run and key (so the caller can read why), then the dead letter. False (retry) when
     * the event was not acknowledged.
     */
    private boolean refuse(ConsumerRecord<byte[], byte[]> r, EditRequest req, InvalidRecordException why) {
        waiting.remove(new TopicPartition(r.topic(), r.partition()));
        if (req != null) {
            SnapshotEvent failed = SnapshotEvent.newBuilder()
                    .setSnapshotId(Fingerprints.snapshot(req.getRunId(), req.getIdempotencyKey())).setRunId(req.getRunId()).setStep(-1)
                    .setIdempotencyKey(req.getIdempotencyKey()).setUri("").setSha256("").setSizeBytes(0).setDtype(DType.FLOAT32)
                    .setLayers(req.getLayers()).setFactorVersions(Map.of()).setCodeVersion(config.codeVersion())
                    .setCreatedMs(System.currentTimeMillis()).setStatus(SnapshotStatus.FAILED).setReason(why.getMessage())
                    .build();
            try {
                out.snapshot(failed);
            } catch (Exception e) {
                LOG.warn("FAILED snapshot event not acknowledged, will retry {} p{}@{}: {}", r.topic(), r.partition(), r.offset(), e.toString());
                backOff(r);
                return false;
            }
            if (registry.snapshot(failed)) {
                out.live("snapshot", failed.getRunId(), Json.snapshot(failed));
            }
        }
        out.deadLetter(r.topic(), r.partition(), r.offset(), r.key(), r.value(), why);
        metrics.inc("curvewatch_service_snapshots_total", "failed");
        return true;
    }

    /** The record of a partition waiting for an eigenbasis, and since when. */
    private record Waiting(long offset, long sinceMs) {
    }

    private final Map<TopicPartition, Waiting> waiting = new java.util.HashMap<>();
    private final Map<TopicPartition, Long> resumeAtMs = new java.util.HashMap<>();

    /** Rewinds to the record and pauses its partition for a moment, so the retry does not spin. */
    private void backOff(ConsumerRecord<byte[], byte[]> r) {
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        consumer.seek(tp, r.offset());
        consumer.pause(List.of(tp));
        resumeAtMs.put(tp, System.currentTimeMillis() + 250);
    }

    private void resumeDue() {
        long now = System.currentTimeMillis();
        for (var it = resumeAtMs.entrySet().iterator(); it.hasNext(); ) {
            var e = it.next();
            if (now >= e.getValue()) {
                if (consumer.assignment().contains(e.getKey())) {
                    consumer.resume(List.of(e.getKey()));
                }
                it.remove();
            }
        }
    }

    private static final class EventNotPublished extends Exception {
        EventNotPublished(Throwable cause) {
            super(cause.toString(), cause);
        }
    }

    /**
     * The request, or null for a tombstone or a key already answered.
     *
     * @throws InvalidRecordException when it cannot be decoded or its run id, key or record key are wrong (a dead letter only:
     *         there is no run and key to tell)
     */
    private EditRequest parse(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return null;
        }
        EditRequest req = decoder.decode(r.value());
        ContractChecks.requirePathSegment(req.getRunId(), "run_id");
        ContractChecks.requireId(req.getIdempotencyKey(), "idempotency_key");
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        if (!req.getRunId().equals(key)) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "edit request key '" + key + "' is not its run id '" + req.getRunId() + "'");
        }
        if (registry.answered(req.getRunId(), req.getIdempotencyKey())) {
            metrics.inc("curvewatch_service_snapshots_total", "duplicate");
            LOG.info("edit request {} of run {} already answered", req.getIdempotencyKey(), req.getRunId());
            return null;
        }
        return req;
    }

    /** Writes the snapshot and publishes its SnapshotEvent. */
    private void serve(EditRequest req) throws EventNotPublished {
        Registry.Run run = registry.run(req.getRunId()).filter(x -> x.info() != null).orElseThrow(() ->
                new InvalidRecordException(RejectReason.UNKNOWN_RUN, "run '" + req.getRunId() + "' is not registered"));
        List<SnapshotEditor.LayerInput> inputs = EditPlan.inputs(req.getLayers(), run, registry);
        List<SnapshotEditor.LayerEdited> edited = new ArrayList<>();
        for (SnapshotEditor.LayerInput in : inputs) {
            edited.add(SnapshotEditor.edit(in));
        }
        String snapshotId = Fingerprints.snapshot(req.getRunId(), req.getIdempotencyKey());
        SnapshotStore.Stored stored = store(req, snapshotId, edited);
        List<LayerRho> layers = new ArrayList<>();
        Map<String, Long> versions = new LinkedHashMap<>();
        for (SnapshotEditor.LayerEdited e : edited) {
            layers.add(new LayerRho(e.layer(), e.rho()));
            versions.put(e.layer(), e.factorVersion());
        }
        SnapshotEvent event = SnapshotEvent.newBuilder()
                .setSnapshotId(snapshotId).setRunId(req.getRunId()).setStep(SnapshotEditor.step(edited))
                .setIdempotencyKey(req.getIdempotencyKey()).setUri(stored.uri()).setSha256(stored.sha256())
                .setSizeBytes(stored.sizeBytes()).setDtype(DType.FLOAT32).setLayers(layers).setFactorVersions(versions)
                .setCodeVersion(config.codeVersion()).setCreatedMs(System.currentTimeMillis())
                .build();
        try {
            out.snapshot(event);
        } catch (Exception e) {
            throw new EventNotPublished(e);
        }
        if (registry.snapshot(event)) { // answered now, before the ingest thread reads it back
            out.live("snapshot", event.getRunId(), Json.snapshot(event));
        }
        metrics.inc("curvewatch_service_snapshots_total", "written");
        LOG.info("snapshot {} of run {} ({}): {} bytes, sha256 {}", snapshotId, req.getRunId(), layers, stored.sizeBytes(), stored.sha256());
    }

    private SnapshotStore.Stored store(EditRequest req, String snapshotId, List<SnapshotEditor.LayerEdited> edited) {
        IOException last = null;
        for (int attempt = 1; attempt <= STORE_ATTEMPTS; attempt++) {
            try {
                return store.write(req.getRunId(), snapshotId, SnapshotEditor.file(req.getRunId(), snapshotId, req.getIdempotencyKey(),
                        config.codeVersion(), edited));
            } catch (IOException e) {
                last = e;
                LOG.warn("writing snapshot {} failed (attempt {} of {}): {}", snapshotId, attempt, STORE_ATTEMPTS, e.toString());
            }
        }
        throw new InvalidRecordException(RejectReason.STORE_FAILED, "snapshot " + snapshotId + " could not be written: " + last);
    }
}
