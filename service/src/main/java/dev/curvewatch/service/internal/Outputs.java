package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.ServiceLayerState;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.DeadLetters;
import dev.curvewatch.schemas.InvalidRecordException;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;

/**
 * Everything the service emits, in one place: records to Kafka (one idempotent producer, shared
 * by the ingest, refresh and edit threads and HTTP handlers), the matching updates of the
 * in-memory history and the live events for SSE/WebSocket clients. Signals go through the alert
 * rules here, so every published value is evaluated exactly once.
 */
public final class Outputs implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Outputs.class);
    public static final String LIVE_ADDRESS = "curvewatch.service.live";

    private final Producer<String, byte[]> producer;
    private final CurvewatchTopics topics;
    private final Registry registry;
    private final AlertEvaluator alerts;
    private final ServiceMetrics metrics;
    private final Vertx vertx;
    private final String component;
    private final int deadLetterMaxValueBytes;
    private final AvroSerializer<Signal> signals = new AvroSerializer<>(Signal.class);
    private final AvroSerializer<ExampleScores> scores = new AvroSerializer<>(ExampleScores.class);
    private final AvroSerializer<EditCandidate> candidates = new AvroSerializer<>(EditCandidate.class);
    private final AvroSerializer<Alert> alertSerializer = new AvroSerializer<>(Alert.class);
    private final AvroSerializer<SnapshotEvent> snapshots = new AvroSerializer<>(SnapshotEvent.class);
    private final AvroSerializer<DeadLetter> deadLetters = new AvroSerializer<>(DeadLetter.class);
    private final AvroSerializer<EditRequest> editRequests = new AvroSerializer<>(EditRequest.class);
    private final AvroSerializer<GuardDecision> guardDecisions = new AvroSerializer<>(GuardDecision.class);
    private final AvroSerializer<ServiceLayerState> serviceStates = new AvroSerializer<>(ServiceLayerState.class);
    private volatile java.util.function.Consumer<Signal> signalListener = s -> { };
    /**
     * Header naming the service process that published a signal: an instance reads the other
     * instances' signals back (history, alert state for a takeover) and skips its own.
     */
    public static final String ORIGIN_HEADER = "curvewatch-origin";
    private final byte[] origin;
    /** Held while a signal is sent and evaluated, or a re-arm made and marked (the topic's order = the evaluation's). */
    private final Object order = new Object();

    public Outputs(Properties client, CurvewatchTopics topics, Registry registry, AlertEvaluator alerts, ServiceMetrics metrics,
                   Vertx vertx, String component, int deadLetterMaxValueBytes) {
        this(producer(client, component), topics, registry, alerts, metrics, vertx, component, deadLetterMaxValueBytes);
    }

    /** Over any producer (tests use Kafka's MockProducer); {@code vertx} may be null: no live events. */
    Outputs(Producer<String, byte[]> producer, CurvewatchTopics topics, Registry registry, AlertEvaluator alerts, ServiceMetrics metrics,
            Vertx vertx, String component, int deadLetterMaxValueBytes) {
        this.producer = producer;
        this.topics = topics;
        this.registry = registry;
        this.alerts = alerts;
        this.metrics = metrics;
        this.vertx = vertx;
        this.component = component;
        this.deadLetterMaxValueBytes = deadLetterMaxValueBytes;
        this.origin = (component + "#" + java.util.UUID.randomUUID()).getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    /** Whether a record was published by this process (its {@link #ORIGIN_HEADER}). */
    public boolean ours(org.apache.kafka.common.header.Headers headers) {
        org.apache.kafka.common.header.Header h = headers.lastHeader(ORIGIN_HEADER);
        return h != null && java.util.Arrays.equals(h.value(), origin);
    }

    private static KafkaProducer<String, byte[]> producer(Properties client, String component) {
        Properties p = new Properties();
        p.putAll(client);
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.setProperty(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, "5");
        // candidates' float bases barely compress: sent plain (TopicSpec.AS_PRODUCED); small topics compress at the broker
        p.putIfAbsent(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        p.putIfAbsent(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.putIfAbsent(ProducerConfig.CLIENT_ID_CONFIG, component + "-producer");
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    public String component() {
        return component;
    }

    /**
     * Publishes signals, adds them to the history, sends live events and evaluates the alert
     * rules on each. A signal of a run the registry no longer holds (forgotten for {@code
     * runs.max} while its refresh ran) is still published, but enters neither the history nor
     * the alert state, so a forgotten run does not creep back. Sending and evaluating one signal is
     * one step under {@link #order}, as is a re-arm with its markers ({@link #rearm}): the order of
     * each layer's partition of the signals topic is the order this instance evaluated in, which
     * is what a replay of the topic needs to rebuild the same alert state.
     */
    public void signals(List<Signal> list, AlertEvaluator.Context ctx) {
        long now = System.currentTimeMillis();
        for (Signal s : list) {
            List<List<Alert>> raised = new java.util.ArrayList<>(1);
            boolean held;
            synchronized (order) {
                send(s);
                held = registry.ifHeld(s.getRunId(), () -> {
                    registry.history().add(s);
                    raised.add(alerts.evaluate(s, ctx, now, true));
                });
            }
            if (held) {
                live("signal", s.getRunId(), Json.signal(s));
                alertsRaw(raised.get(0));
                signalListener.accept(s);
            }
        }
    }

    /**
     * Re-arms a run's alert rules on an edited model ({@link AlertEvaluator#rearm}) and publishes a
     * {@link AlertEvaluator#REARM_MARKER} signal (step and value = {@code step}) for each of its layers
     * (those given, those with rule state, and the run-level series) at the same place of each
     * layer's sequence, so a replay of the signals topic re-arms where this did. Returns the RESOLVED
     * alerts of the rules that were firing (not yet published).
     */
    public List<Alert> rearm(String runId, long step, String snapshotId, java.util.Collection<String> layers) {
        long now = System.currentTimeMillis();
        synchronized (order) {
            java.util.Set<String> marked = new java.util.LinkedHashSet<>(layers);
            marked.addAll(alerts.layers(runId));
            marked.add(null);
            List<Alert> resolved = alerts.rearm(runId, step, snapshotId, now);
            for (String layer : marked) {
                Signal marker = Signal.newBuilder().setRunId(runId).setLayer(layer).setStep(step).setName(AlertEvaluator.REARM_MARKER)
                        .setValue(step).setTimestampMs(now).build();
                send(marker);
                registry.ifHeld(runId, () -> registry.history().add(marker));
            }
            return resolved;
        }
    }

    private void send(Signal s) {
        String key = s.getLayer() == null ? s.getRunId() : CurvewatchTopics.runLayerKey(s.getRunId(), s.getLayer());
        ProducerRecord<String, byte[]> rec = new ProducerRecord<>(topics.signals(), key, signals.serialize(null, s));
        rec.headers().add(ORIGIN_HEADER, origin);
        producer.send(rec, log("signal " + key + " " + s.getName()));
        metrics.inc("curvewatch_service_signals_total");
    }

    /** Hears every signal published for a held run, after the alert rules (the guard's harm check). */
    public void onSignal(java.util.function.Consumer<Signal> listener) {
        this.signalListener = listener;
    }

    /** What a taker of an owned layer needs ({@link Handover}), to service-state, key run/layer. */
    public void serviceState(ServiceLayerState st) {
        String key = CurvewatchTopics.runLayerKey(st.getRunId(), st.getLayer());
        producer.send(new ProducerRecord<>(topics.serviceState(), key, serviceStates.serialize(null, st)), log("service state " + key));
    }

    /** A decision of the service's guard (re-armed, harmful, rollback offered) to guard-decisions, key run. */
    public void guardDecision(GuardDecision d) {
        producer.send(new ProducerRecord<>(topics.guardDecisions(), d.getRunId(), guardDecisions.serialize(null, d)),
                log("guard decision " + d.getAction() + " " + d.getRunId()));
    }

    public void scores(List<ExampleScores> list) {
        for (ExampleScores s : list) {
            String key = s.getLayer() == null ? s.getRunId() : CurvewatchTopics.runLayerKey(s.getRunId(), s.getLayer());
            producer.send(new ProducerRecord<>(topics.scores(), key, scores.serialize(null, s)), log("scores " + key));
            metrics.inc("curvewatch_service_scores_total");
        }
    }

    /**
     * Sends a candidate's records (key = run) in order, so its parts stay consecutive in the
     * partition; the returned future completes when Kafka took every part and fails on the first
     * it refused (also when send itself throws, and then the later parts are not sent).
     */
    public CompletableFuture<RecordMetadata> candidate(List<EditCandidate> parts) {
        String id = parts.get(0).getCandidateId();
        List<CompletableFuture<RecordMetadata>> sent = new java.util.ArrayList<>(parts.size());
        for (EditCandidate c : parts) {
            CompletableFuture<RecordMetadata> done = new CompletableFuture<>();
            sent.add(done);
            try {
                producer.send(new ProducerRecord<>(topics.editCandidates(), c.getRunId(), candidates.serialize(null, c)), (md, err) -> {
                    if (err != null) {
                        done.completeExceptionally(err);
                    } else {
                        done.complete(md);
                    }
                });
            } catch (RuntimeException e) { // serialization, a closed producer, a record over max.request.size
                done.completeExceptionally(e);
                break;
            }
        }
        CompletableFuture<RecordMetadata> all = new CompletableFuture<>();
        CompletableFuture.allOf(sent.toArray(CompletableFuture[]::new)).whenComplete((v, err) -> {
            if (err != null) { // a send that threw completed its future exceptionally, so a break lands here too
                Throwable cause = err instanceof java.util.concurrent.CompletionException && err.getCause() != null ? err.getCause() : err;
                LOG.error("could not publish candidate {} ({} parts): {}", id, parts.size(), String.valueOf(cause));
                all.completeExceptionally(cause);
            } else {
                metrics.inc("curvewatch_service_candidates_total");
                metrics.inc("curvewatch_service_candidate_parts_total", parts.size());
                all.complete(sent.get(sent.size() - 1).join());
            }
        });
        return all;
    }

    public void alertsRaw(List<Alert> list) {
        for (Alert a : list) {
            producer.send(new ProducerRecord<>(topics.alertsRaw(), a.getFingerprint(), alertSerializer.serialize(null, a)),
                    log("alert " + a.getFingerprint()));
            registry.rawAlert(a);
            metrics.inc("curvewatch_service_alerts_total", a.getStatus().name());
        }
    }

    /** Sends a snapshot event and waits for the broker's acknowledgement. */
    public void snapshot(SnapshotEvent e) throws Exception {
        producer.send(new ProducerRecord<>(topics.snapshots(), e.getRunId(), snapshots.serialize(null, e))).get();
    }

    /** POST /edits: the one way an HTTP edit enters; completes when the broker has it. */
    public CompletableFuture<RecordMetadata> editRequest(EditRequest r) {
        CompletableFuture<RecordMetadata> done = new CompletableFuture<>();
        producer.send(new ProducerRecord<>(topics.editRequests(), r.getRunId(), editRequests.serialize(null, r)), (md, err) -> {
            if (err != null) {
                done.completeExceptionally(err);
            } else {
                metrics.inc("curvewatch_service_edit_requests_total");
                done.complete(md);
            }
        });
        return done;
    }

    /** A rejected input record to dead letters, with where it came from and why. */
    public void deadLetter(String topic, int partition, long offset, byte[] key, byte[] value, InvalidRecordException why) {
        DeadLetter dl = DeadLetters.of(topic, partition, offset, key, value, deadLetterMaxValueBytes, why, component);
        LOG.warn("dead letter from {} p{}@{}: {}", topic, partition, offset, why.getMessage());
        producer.send(new ProducerRecord<>(topics.deadLetters(), key == null ? null : new String(key, java.nio.charset.StandardCharsets.UTF_8),
                deadLetters.serialize(null, dl)), log("dead letter"));
        registry.countDeadLetter();
        metrics.inc("curvewatch_service_dead_letters_total", why.reason().name());
    }

    /** A live event for SSE and WebSocket clients: {type, run, data}. */
    public void live(String type, String runId, JsonObject data) {
        if (vertx != null) {
            vertx.eventBus().publish(LIVE_ADDRESS, new JsonObject().put("type", type).put("run", runId).put("data", data));
        }
    }

    public void flush() {
        producer.flush();
    }

    private static org.apache.kafka.clients.producer.Callback log(String what) {
        return (md, err) -> {
            if (err != null) {
                LOG.error("could not publish {}: {}", what, err.toString());
            }
        };
    }

    @Override
    public void close() {
        producer.close(java.time.Duration.ofSeconds(10));
    }
}
