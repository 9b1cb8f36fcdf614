package dev.curvewatch.service;

import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.service.internal.AlertEvaluator;
import dev.curvewatch.service.internal.Outputs;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The live guard's re-arm across a restart and a second instance, on a real KRaft broker with the shipped defaults
 * (4 capture partitions, the default rules gap-jump, gap-high and gap-regrowth). The memorization gaps come from
 * "another instance" (a peer's origin header), so every service evaluates them into its alert state without
 * publishing; the state is read from the {@code curvewatch_service_firing_rules} gauge. With the values below only
 * gap-regrowth can fire (0.05 is above the edited model's anchor 0.015 + 0.01, below gap-jump's 0.06 kept from
 * before the edit and gap-high's 0.25), and it fires only on a service whose alert state knows of the snapshot.
 */
@Tag("integration")
class GuardRestartIT {
    private static final String RUN = "guard-restart-run";
    private static final Duration WAIT = Duration.ofSeconds(90);
    private static final Pattern FIRING = Pattern.compile("(?m)^curvewatch_service_firing_rules(?:\\{[^}]*})? (\\S+)$");

    private static Map<String, String> config(LocalKafka kafka, Path dir, String instance) {
        Map<String, String> c = new LinkedHashMap<>();
        c.put("bootstrap", kafka.bootstrapServers());
        c.put("http.port", "0");
        c.put("instance.id", instance);
        c.put("snapshot.dir", dir.resolve("snapshots-" + instance).toString());
        return c;
    }

    private static void await(BooleanSupplier c, String what) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!c.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what);
            Thread.sleep(50);
        }
    }

    private static int firing(CurvewatchService s) {
        Matcher m = FIRING.matcher(s.metrics());
        assertTrue(m.find(), "the firing-rules gauge");
        return (int) Double.parseDouble(m.group(1));
    }

    /** Records on a topic (none is transactional here: the end offsets count them). */
    private static long records(LocalKafka kafka, String topic) {
        Properties p = new Properties();
        p.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> parts = c.partitionsFor(topic, Duration.ofSeconds(30)).stream()
                    .map(i -> new TopicPartition(topic, i.partition())).toList();
            return c.endOffsets(parts, Duration.ofSeconds(30)).values().stream().mapToLong(Long::longValue).sum();
        }
    }

    private static boolean seen(CurvewatchService s, long step) {
        return s.state().signal(RUN, "fc1", "memorization_gap").stream().anyMatch(p -> p.step() == step);
    }

    /** A gap of fc1 as another service instance publishes it (its own origin header). */
    private static void peerGap(KafkaProducer<String, byte[]> producer, CurvewatchTopics topics, long step, double value) throws Exception {
        Signal s = Signal.newBuilder().setRunId(RUN).setLayer("fc1").setStep(step).setName("memorization_gap").setValue(value)
                .setFactorVersion(step).setTimestampMs(System.currentTimeMillis()).build();
        ProducerRecord<String, byte[]> r = new ProducerRecord<>(topics.signals(), CurvewatchTopics.runLayerKey(RUN, "fc1"),
                new AvroSerializer<>(Signal.class).serialize(null, s));
        r.headers().add(Outputs.ORIGIN_HEADER, "service:peer#guard-restart-it".getBytes(StandardCharsets.UTF_8));
        producer.send(r).get();
    }

    @Test
    void aServiceStartedAfterAnAppliedSnapshotWatchesForRegrowthLikeTheOneThatSawIt(@TempDir Path dir) throws Exception {
        Properties p = new Properties();
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start()) {
            CurvewatchTopics topics = kafka.topics();
            p.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
            p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
            try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer())) {
                RunInfo run = RunInfo.newBuilder().setRunId(RUN).setModel("m").setSource("guard-restart-it").setCreatedMs(1)
                        .setLayers(List.of(LayerInfo.newBuilder().setName("fc1").setDIn(3).setDOut(2).build())).build();
                producer.send(new ProducerRecord<>(topics.runs(), RUN, new AvroSerializer<>(RunInfo.class).serialize(null, run))).get();
                try (CurvewatchService first = CurvewatchService.start(ServiceConfig.of(config(kafka, dir, "guard-a")))) {
                    assertTrue(first.awaitCaughtUp(WAIT), "caught up");
                    for (long step = 10; step < 15; step++) {
                        peerGap(producer, topics, step, 0.01); // the model before the edit: gap-jump's window fills
                    }
                    await(() -> seen(first, 14), "the gaps before the edit");
                    GuardDecision applied = GuardDecision.newBuilder().setId("t-1").setRunId(RUN).setStep(20)
                            .setAction(GuardAction.APPLIED).setReason("loaded after step 20").setSource("trainer:" + RUN)
                            .setSnapshotId("snap-1").setIdempotencyKey("rule:gap-guard:x:1").setLayers(List.of(new LayerRho("fc1", 0.6)))
                            .setCreatedMs(1).build();
                    producer.send(new ProducerRecord<>(topics.guardDecisions(), RUN,
                            new AvroSerializer<>(GuardDecision.class).serialize(null, applied))).get();
                    await(() -> first.guardDecisions(RUN).stream().anyMatch(d -> d.getAction() == GuardAction.REARMED), "REARMED");
                    peerGap(producer, topics, 20, 0.015); // the edited model's first gap: gap-regrowth's anchor
                    await(() -> seen(first, 20), "the edited model's first gap");

                    // a second instance starts now: its alert state comes from the signals topic alone
                    try (CurvewatchService second = CurvewatchService.start(ServiceConfig.of(config(kafka, dir, "guard-b")))) {
                        assertTrue(second.awaitCaughtUp(WAIT), "the second instance caught up");
                        await(() -> seen(second, 20), "the replay");
                        assertEquals(0, firing(first));
                        assertEquals(0, firing(second));
                        peerGap(producer, topics, 30, 0.05); // regrowth
                        await(() -> firing(first) == 1, "gap-regrowth firing on the instance that saw the snapshot applied");
                        await(() -> firing(second) == 1, "gap-regrowth firing on the instance started after it");
                    }
                }
                // a restart with nothing else running: the firing rule comes back, and it resolves as it would have
                try (CurvewatchService restarted = CurvewatchService.start(ServiceConfig.of(config(kafka, dir, "guard-a")))) {
                    assertTrue(restarted.awaitCaughtUp(WAIT), "the restart caught up");
                    await(() -> seen(restarted, 30), "the replay");
                    assertEquals(1, firing(restarted), "gap-regrowth still firing after the restart");
                    peerGap(producer, topics, 31, 0.012);
                    await(() -> firing(restarted) == 0, "gap-regrowth resolved");
                    assertEquals(2, records(kafka, topics.guardDecisions()),
                            "APPLIED and one REARMED: neither the second instance nor the restart answered the APPLIED again");
                    List<String> markers = restarted.state().signal(RUN, "fc1", AlertEvaluator.REARM_MARKER).stream()
                            .map(pt -> pt.step() + "=" + pt.value()).toList();
                    assertEquals(List.of("20=20.0"), markers, "one re-arm marker of fc1, at the applied step");
                }
                assertEquals(0, records(kafka, topics.alertsRaw()), "the peer's signals are its to alert on; no replay published an alert");
            }
        }
    }
}
