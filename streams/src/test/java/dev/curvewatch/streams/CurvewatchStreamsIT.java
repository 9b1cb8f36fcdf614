package dev.curvewatch.streams;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.KafkaClientSettings;
import dev.curvewatch.testkit.Await;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The streams app on a real KRaft broker: registry, de-dup, held resolution, an edit request from
 * the default rule, a dead letter, and alert state that survives a restart (changelog topics).
 */
@Tag("integration")
class CurvewatchStreamsIT {
    private static final CurvewatchTopics T = CurvewatchTopics.withDefaultPrefix();

    @Test
    void pipelineOnARealBroker(@TempDir Path dir) throws Exception {
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             KafkaProducer<String, byte[]> producer = producer(kafka.bootstrapServers())) {
            Map<String, String> cfg = Map.of("bootstrap", kafka.bootstrapServers(), "application.id", "cw-it",
                    "state.dir", dir.resolve("state").toString(), "alerts.resolve.hold.ms", "1000",
                    "kafka.commit.interval.ms", "100");
            RunInfo run = RunInfo.newBuilder().setRunId("run-1").setModel("mlp").setCreatedMs(1)
                    .setLayers(List.of(new LayerInfo("fc2", 8, 8, false, true))).build();
            producer.send(new ProducerRecord<>(T.runs(), "run-1", new AvroSerializer<>(RunInfo.class).serialize(T.runs(), run))).get();
            Alert firing = Alert.newBuilder().setId("a1").setFingerprint("run-1.fc2.gap").setRunId("run-1").setStep(10)
                    .setLayer("fc2").setRule("gap").setSignal("memorization_gap").setValue(0.4).setThreshold(0.05)
                    .setSeverity(Severity.CRITICAL).setStatus(AlertStatus.FIRING).setFirstSeenMs(100).setLastSeenMs(100)
                    .setSummary("gap 0.40 nats on fc2").build();
            AvroSerializer<Alert> alerts = new AvroSerializer<>(Alert.class);
            try (CurvewatchStreams app = CurvewatchStreams.start(StreamsAppConfig.of(cfg), Duration.ofSeconds(60))) {
                await(() -> app.runs().containsKey("run-1"), "run registered");
                for (int i = 0; i < 3; i++) {
                    producer.send(new ProducerRecord<>(T.alertsRaw(), "run-1.fc2.gap", alerts.serialize(T.alertsRaw(),
                            Alert.newBuilder(firing).setStep(10 + i).build()))).get();
                }
                producer.send(new ProducerRecord<>(T.alertsRaw(), "run-1.fc2.gap", new byte[] {(byte) 0xC3, 1})).get();
                producer.send(new ProducerRecord<>(T.alertsRaw(), "run-1.fc2.gap", alerts.serialize(T.alertsRaw(),
                        Alert.newBuilder(firing).setStep(20).setStatus(AlertStatus.RESOLVED).build()))).get();
                List<Alert> out = read(kafka.bootstrapServers(), T.alerts(), 2, Alert.class);
                assertEquals(List.of(AlertStatus.FIRING, AlertStatus.RESOLVED), out.stream().map(Alert::getStatus).toList());
                List<EditRequest> edits = read(kafka.bootstrapServers(), T.editRequests(), 1, EditRequest.class);
                assertTrue(edits.get(0).getIdempotencyKey().startsWith("rule:gap-guard:"), edits.get(0).getIdempotencyKey());
                // the guard saw every firing evaluation: one edit, then it waits for the trainer to apply it
                List<GuardDecision> decisions = read(kafka.bootstrapServers(), T.guardDecisions(), 3, GuardDecision.class);
                assertEquals(List.of(GuardAction.EDIT, GuardAction.SKIP, GuardAction.SKIP),
                        decisions.stream().map(GuardDecision::getAction).toList());
                await(() -> app.deadLetterCounts().getOrDefault(T.alertsRaw() + "/TRUNCATED", 0L) == 1, "dead letter counted");
            }
            // a restart restores the alert state from its changelog: a new firing is a new episode,
            // a repeat of it after the next restart is not published again
            String firstKey = read(kafka.bootstrapServers(), T.editRequests(), 1, EditRequest.class).get(0).getIdempotencyKey();
            try (CurvewatchStreams app = CurvewatchStreams.start(StreamsAppConfig.of(cfg), Duration.ofSeconds(60))) {
                assertEquals(AlertStatus.RESOLVED, app.alerts().get("run-1.fc2.gap").getStatus());
                assertTrue(app.guardStates().get("run-1/fc2").contains("pendingKey=" + firstKey), "the guard's state survived: "
                        + app.guardStates());
                // the trainer applied it; a firing within the cooldown is no reason for another edit
                producer.send(new ProducerRecord<>(T.guardDecisions(), "run-1", new AvroSerializer<>(GuardDecision.class).serialize(null,
                        GuardDecision.newBuilder().setId("t1").setRunId("run-1").setStep(15).setAction(GuardAction.APPLIED)
                                .setReason("loaded").setSource("trainer:run-1").setIdempotencyKey(firstKey)
                                .setLayers(List.of(new LayerRho("fc2", 0.6))).setCreatedMs(1).build()))).get();
                await(() -> app.guardStates().get("run-1/fc2").contains("lastAppliedStep=15"), "the application seen");
                producer.send(new ProducerRecord<>(T.alertsRaw(), "run-1.fc2.gap", alerts.serialize(T.alertsRaw(),
                        Alert.newBuilder(firing).setStep(30).setFirstSeenMs(300).setLastSeenMs(300).build()))).get();
                await(() -> app.alerts().get("run-1.fc2.gap").getStatus() == AlertStatus.FIRING, "fired again");
            }
            try (CurvewatchStreams app = CurvewatchStreams.start(StreamsAppConfig.of(cfg), Duration.ofSeconds(60))) {
                producer.send(new ProducerRecord<>(T.alertsRaw(), "run-1.fc2.gap", alerts.serialize(T.alertsRaw(),
                        Alert.newBuilder(firing).setStep(31).setFirstSeenMs(310).setLastSeenMs(310).build()))).get();
                await(() -> app.alerts().get("run-1.fc2.gap").getStep() == 31, "repeat seen");
                // past the cooldown memorization is still there: the guard edits again
                producer.send(new ProducerRecord<>(T.alertsRaw(), "run-1.fc2.gap", alerts.serialize(T.alertsRaw(),
                        Alert.newBuilder(firing).setStep(10 + EditRule.Limits.DEFAULTS.cooldownSteps()).setFirstSeenMs(310)
                                .setLastSeenMs(320).build()))).get();
                await(() -> app.guardStates().get("run-1/fc2").startsWith("edits=2;"), "the second edit");
            }
            List<Alert> all = read(kafka.bootstrapServers(), T.alerts(), 3, Alert.class);
            assertEquals(3, all.size(), "FIRING, RESOLVED, FIRING (the repeat after the restart is not published)");
            assertEquals(300, all.get(2).getFirstSeenMs());
            List<EditRequest> both = read(kafka.bootstrapServers(), T.editRequests(), 2, EditRequest.class);
            assertEquals(2, both.size(), "one edit, then a second once the first was applied and the cooldown passed");
            assertEquals(firstKey, both.get(0).getIdempotencyKey());
            assertTrue(both.get(1).getIdempotencyKey().endsWith(":2"), both.get(1).getIdempotencyKey());
        }
    }

    private static KafkaProducer<String, byte[]> producer(String bootstrap) {
        Properties p = KafkaClientSettings.forBootstrap(bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    /** Waits up to 60 s; an exception counts as "not yet" (stores are unavailable while the app rebalances or restores) and is shown if the wait ends. */
    private static void await(BooleanSupplier condition, String what) {
        Await.until(() -> {
            try {
                return condition.getAsBoolean() ? "met" : "not met";
            } catch (RuntimeException notYet) {
                return notYet.toString();
            }
        }, "met"::equals, Duration.ofSeconds(60), what);
    }

    /** Every record of a topic (read_committed: the app writes transactionally), waiting for at least {@code min}. */
    private static <T extends org.apache.avro.specific.SpecificRecord> List<T> read(String bootstrap, String topic, int min,
                                                                                   Class<T> type) {
        Properties p = KafkaClientSettings.forBootstrap(bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, "it-read-" + System.nanoTime());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        AvroDeserializer<T> d = new AvroDeserializer<>(type);
        List<T> out = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
            c.subscribe(List.of(topic));
            Await.until(() -> {
                for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(300))) {
                    out.add(d.decode(r.value()));
                }
                return out.size();
            }, n -> n >= min, Duration.ofSeconds(60), min + " records on " + topic);
            for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(1500))) {
                out.add(d.decode(r.value())); // anything unexpected beyond min
            }
        }
        return out;
    }
}
