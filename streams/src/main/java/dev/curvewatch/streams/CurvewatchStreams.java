package dev.curvewatch.streams;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.RunInfo;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The running streams app: {@link #start} checks the topics, starts {@code KafkaStreams} with
 * {@link CurvewatchTopology} and waits until it runs; the read methods are the interactive
 * queries the service uses (run registry, alert state, dead-letter counts).
 */
public final class CurvewatchStreams implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(CurvewatchStreams.class);
    private final KafkaStreams streams;

    private CurvewatchStreams(KafkaStreams streams) {
        this.streams = streams;
    }

    /**
     * @throws IllegalStateException if a topic is missing, runs and alerts.raw differ in
     *         partitions (the registry store is shared by both), or the app does not reach
     *         RUNNING within {@code timeout}
     */
    public static CurvewatchStreams start(StreamsAppConfig config, Duration timeout) throws InterruptedException {
        checkTopics(config, timeout);
        KafkaStreams streams = new KafkaStreams(CurvewatchTopology.build(config), config.streams());
        streams.setUncaughtExceptionHandler(e -> {
            LOG.error("streams thread failed; replacing it", e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        streams.start();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (streams.state() != KafkaStreams.State.RUNNING) {
            if (System.nanoTime() > deadline || streams.state() == KafkaStreams.State.ERROR
                    || streams.state() == KafkaStreams.State.NOT_RUNNING) {
                KafkaStreams.State s = streams.state();
                streams.close(leaving(Duration.ofSeconds(10)));
                throw new IllegalStateException("streams app " + config.applicationId() + " did not reach RUNNING within "
                        + timeout.toSeconds() + " s (state " + s + ")");
            }
            Thread.sleep(50);
        }
        LOG.info("streams app {} running: {} edit rule(s), resolve hold {} ms", config.applicationId(),
                config.rules().size(), config.resolveHoldMs());
        return new CurvewatchStreams(streams);
    }

    private static void checkTopics(StreamsAppConfig config, Duration timeout) {
        List<String> names = List.of(config.topics().runs(), config.topics().alertsRaw(), config.topics().alerts(),
                config.topics().editRequests(), config.topics().deadLetters(), config.topics().guardDecisions());
        try (Admin admin = Admin.create(config.streams())) {
            Map<String, TopicDescription> d = admin.describeTopics(names).allTopicNames()
                    .get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            int runs = d.get(config.topics().runs()).partitions().size();
            for (String t : List.of(config.topics().alertsRaw(), config.topics().guardDecisions())) {
                int n = d.get(t).partitions().size();
                if (runs != n) {
                    throw new IllegalStateException(config.topics().runs() + " has " + runs + " partitions and " + t + " " + n
                            + ": alert validation and the guard read the run registry, so they must match");
                }
            }
        } catch (ExecutionException e) {
            throw new IllegalStateException("cannot describe the Curvewatch topics " + names + ": " + e.getCause().getMessage()
                    + " (create them with `curvewatch broker` or LocalKafka)", e.getCause());
        } catch (TimeoutException e) {
            throw new IllegalStateException("no answer from Kafka at " + config.streams().getProperty("bootstrap.servers")
                    + " within " + timeout.toSeconds() + " s", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while checking topics", e);
        }
    }

    public KafkaStreams.State state() {
        return streams.state();
    }

    /** The run registry, by run id. */
    public Map<String, RunInfo> runs() {
        return all(CurvewatchTopology.RUN_REGISTRY_STORE);
    }

    /** The latest state of every alert fingerprint seen (firing or resolved). */
    public Map<String, Alert> alerts() {
        return all(CurvewatchTopology.ALERT_STATE_STORE);
    }

    /** The guard's state per {@code run/layer} (edits, pending snapshot, escalation, ...). */
    public Map<String, String> guardStates() {
        return all(CurvewatchTopology.GUARD_STATE_STORE);
    }

    /** Dead letters counted by {@code <original topic>/<reason code>}. */
    public Map<String, Long> deadLetterCounts() {
        return all(CurvewatchTopology.DEAD_LETTER_COUNTS_STORE);
    }

    private <V> Map<String, V> all(String store) {
        ReadOnlyKeyValueStore<String, V> s = streams.store(StoreQueryParameters.fromNameAndType(store,
                QueryableStoreTypes.<String, V>keyValueStore()));
        Map<String, V> out = new TreeMap<>();
        try (KeyValueIterator<String, V> it = s.all()) {
            while (it.hasNext()) {
                KeyValue<String, V> kv = it.next();
                out.put(kv.key, kv.value);
            }
        }
        return out;
    }

    /**
     * Closes and leaves the consumer group at once. Kafka Streams stays in the group by default, so
     * whoever takes over (another instance, or this one restarted) waited out the session timeout
     * (45 s) before getting the partitions: the registry, alert routing and edit rules stood still
     * that long after every deliberate stop.
     */
    @Override
    public void close() {
        streams.close(leaving(Duration.ofSeconds(30)));
    }

    private static CloseOptions leaving(Duration timeout) {
        return CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP).withTimeout(timeout);
    }
}
