package dev.curvewatch.streams;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchSerdes;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.streams.internal.AlertProcessor;
import dev.curvewatch.streams.internal.DeadLetterStatsProcessor;
import dev.curvewatch.streams.internal.GuardPolicy;
import dev.curvewatch.streams.internal.GuardProcessor;
import dev.curvewatch.streams.internal.Names;
import dev.curvewatch.streams.internal.RunRegistryProcessor;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.state.Stores;

/**
 * The streams app's topology (processor API; DESIGN §1 "streams"):
 * <pre>
 * runs ---------> run-registry ---------------------------------> dead-letters
 *                     | store run-registry-store
 * alerts.raw ---> alert-dedup --> alerts (key fingerprint, headers run/severity/status/layer)
 *                     |       \-> guard (every FIRING) --> edit-requests (key run)
 *                     |              ^    |  store       \-> guard-decisions (key run)
 * guard-decisions ----|--------------/    |  guard-state  \-> alerts.raw (guard-exhausted, guard-not-applied)
 *                     \---------------------------------------> dead-letters
 * dead-letters -> dead-letter-stats (store dead-letter-counts-store)
 * </pre>
 * Sources read raw bytes, so nothing can fail before our own validation turns it into a dead
 * letter with a reason. alert-dedup and guard read the registry store: runs, alerts.raw and
 * guard-decisions must have the same partition count (one each by default; {@link CurvewatchStreams}
 * checks at start).
 */
public final class CurvewatchTopology {
    /** Queryable stores: run id → RunInfo, fingerprint → latest alert state, topic/reason → count. */
    public static final String RUN_REGISTRY_STORE = Names.RUNS_STORE;
    public static final String ALERT_STATE_STORE = Names.ALERT_STATE_STORE;
    public static final String DEAD_LETTER_COUNTS_STORE = Names.DEAD_LETTER_COUNTS_STORE;
    /** run/layer → the guard's state ({@code GuardState} text). */
    public static final String GUARD_STATE_STORE = Names.GUARD_STATE_STORE;

    private CurvewatchTopology() {
    }

    public static Topology build(StreamsAppConfig config) {
        CurvewatchTopics t = config.topics();
        String component = "streams:" + config.applicationId();
        Serde<RunInfo> runSerde = CurvewatchSerdes.of(RunInfo.class);
        Serde<Alert> alertSerde = CurvewatchSerdes.of(Alert.class);
        ByteArrayDeserializer bytes = new ByteArrayDeserializer();

        Topology topology = new Topology();
        topology.addSource(Names.RUNS_SOURCE, bytes, bytes, t.runs());
        topology.addSource(Names.ALERTS_RAW_SOURCE, bytes, bytes, t.alertsRaw());
        topology.addSource(Names.DEAD_LETTERS_SOURCE, bytes, bytes, t.deadLetters());
        topology.addSource(Names.GUARD_DECISIONS_SOURCE, bytes, bytes, t.guardDecisions());

        topology.addProcessor(Names.RUN_REGISTRY, () -> new RunRegistryProcessor(component), Names.RUNS_SOURCE);
        topology.addProcessor(Names.ALERT_DEDUP, () -> new AlertProcessor(config.resolveHoldMs(), component),
                Names.ALERTS_RAW_SOURCE);
        topology.addProcessor(Names.GUARD, () -> new GuardProcessor(new GuardPolicy(config.rules(), component), component),
                Names.ALERT_DEDUP, Names.GUARD_DECISIONS_SOURCE);
        topology.addProcessor(Names.DEAD_LETTER_STATS, DeadLetterStatsProcessor::new, Names.DEAD_LETTERS_SOURCE);

        // small, hot state: in memory, made durable by changelog topics
        topology.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(Names.RUNS_STORE),
                Serdes.String(), runSerde), Names.RUN_REGISTRY, Names.ALERT_DEDUP, Names.GUARD);
        topology.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(Names.ALERT_STATE_STORE),
                Serdes.String(), alertSerde), Names.ALERT_DEDUP);
        topology.addStateStore(Stores.timestampedKeyValueStoreBuilder(Stores.inMemoryKeyValueStore(Names.ALERT_RESOLVING_STORE),
                Serdes.String(), alertSerde), Names.ALERT_DEDUP);
        topology.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(Names.DEAD_LETTER_COUNTS_STORE),
                Serdes.String(), Serdes.Long()), Names.DEAD_LETTER_STATS);
        topology.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(Names.GUARD_STATE_STORE),
                Serdes.String(), Serdes.String()), Names.GUARD);

        topology.addSink(Names.ALERTS_SINK, t.alerts(), keys(), values(Alert.class), Names.ALERT_DEDUP);
        topology.addSink(Names.EDIT_REQUESTS_SINK, t.editRequests(), keys(), values(EditRequest.class), Names.GUARD);
        topology.addSink(Names.GUARD_DECISIONS_SINK, t.guardDecisions(), keys(), values(GuardDecision.class), Names.GUARD);
        topology.addSink(Names.GUARD_ALERTS_SINK, t.alertsRaw(), keys(), values(Alert.class), Names.GUARD);
        topology.addSink(Names.DEAD_LETTERS_SINK, t.deadLetters(), rawKeys(), values(DeadLetter.class),
                Names.RUN_REGISTRY, Names.ALERT_DEDUP, Names.GUARD);
        return topology;
    }

    @SuppressWarnings("unchecked")
    private static Serializer<Object> keys() {
        Serializer<?> s = new StringSerializer();
        return (Serializer<Object>) s;
    }

    @SuppressWarnings("unchecked")
    private static Serializer<Object> rawKeys() {
        Serializer<?> s = new ByteArraySerializer();
        return (Serializer<Object>) s;
    }

    @SuppressWarnings("unchecked")
    private static <T extends org.apache.avro.specific.SpecificRecord> Serializer<Object> values(Class<T> type) {
        Serializer<?> s = new AvroSerializer<>(type);
        return (Serializer<Object>) s;
    }
}
