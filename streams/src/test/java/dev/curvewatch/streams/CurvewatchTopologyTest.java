package dev.curvewatch.streams;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The whole topology on TopologyTestDriver: registry, de-dup, anti-flapping, routing, rules, dead letters. */
class CurvewatchTopologyTest {
    private static final long HOLD_MS = 30_000;
    private static final CurvewatchTopics T = CurvewatchTopics.withDefaultPrefix();
    private final AvroSerializer<RunInfo> runs = new AvroSerializer<>(RunInfo.class);
    private final AvroSerializer<Alert> alerts = new AvroSerializer<>(Alert.class);
    private TopologyTestDriver driver;
    private TestInputTopic<byte[], byte[]> runsIn;
    private TestInputTopic<byte[], byte[]> alertsIn;
    private TestInputTopic<byte[], byte[]> deadIn;
    private TestInputTopic<byte[], byte[]> guardIn;
    private TestOutputTopic<String, byte[]> guardOut;
    private TestOutputTopic<String, byte[]> rawOut;
    private final AvroSerializer<GuardDecision> guard = new AvroSerializer<>(GuardDecision.class);
    private TestOutputTopic<String, byte[]> alertsOut;
    private TestOutputTopic<String, byte[]> editsOut;
    private TestOutputTopic<byte[], byte[]> deadOut;

    @BeforeEach
    void start() {
        List<EditRule> rules = List.of(
                new EditRule("gap-critical", "memorization_gap", Severity.CRITICAL, Pattern.compile(".*"), List.of(), -1),
                new EditRule("prod-fixed", "*", Severity.WARNING, Pattern.compile("prod-.*"), List.of("fc1", "fc2"), 0.9));
        Properties p = new Properties();
        p.put("bootstrap.servers", "unused:9092");
        p.put("application.id", "cw-test");
        StreamsAppConfig config = new StreamsAppConfig(p, T, HOLD_MS, rules);
        driver = new TopologyTestDriver(CurvewatchTopology.build(config), p, Instant.ofEpochMilli(1_000_000));
        ByteArraySerializer b = new ByteArraySerializer();
        runsIn = driver.createInputTopic(T.runs(), b, b);
        alertsIn = driver.createInputTopic(T.alertsRaw(), b, b);
        deadIn = driver.createInputTopic(T.deadLetters(), b, b);
        guardIn = driver.createInputTopic(T.guardDecisions(), b, b);
        guardOut = driver.createOutputTopic(T.guardDecisions(), new StringDeserializer(), new ByteArrayDeserializer());
        rawOut = driver.createOutputTopic(T.alertsRaw(), new StringDeserializer(), new ByteArrayDeserializer());
        alertsOut = driver.createOutputTopic(T.alerts(), new StringDeserializer(), new ByteArrayDeserializer());
        editsOut = driver.createOutputTopic(T.editRequests(), new StringDeserializer(), new ByteArrayDeserializer());
        deadOut = driver.createOutputTopic(T.deadLetters(), new ByteArrayDeserializer(), new ByteArrayDeserializer());
        register("run-1");
        register("prod-7");
    }

    @AfterEach
    void stop() {
        driver.close();
    }

    private void register(String run) {
        RunInfo info = RunInfo.newBuilder().setRunId(run).setModel("mlp").setCreatedMs(1)
                .setLayers(List.of(new LayerInfo("fc1", 4, 3, false, true), new LayerInfo("fc2", 3, 3, false, true))).build();
        runsIn.pipeInput(bytes(run), runs.serialize(T.runs(), info));
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static Alert alert(String run, String layer, Severity severity, AlertStatus status, long step, long seenMs) {
        String fp = run + "." + layer + ".gap";
        return Alert.newBuilder().setId("a-" + step + "-" + status).setFingerprint(fp).setRunId(run).setStep(step)
                .setLayer(layer).setRule("gap").setSignal("memorization_gap").setValue(0.4).setThreshold(0.05)
                .setSeverity(severity).setStatus(status).setFirstSeenMs(seenMs).setLastSeenMs(seenMs)
                .setSummary("gap 0.40 nats on " + layer).build();
    }

    private void send(Alert a) {
        alertsIn.pipeInput(bytes(a.getFingerprint()), alerts.serialize(T.alertsRaw(), a));
    }

    private List<Alert> published() {
        AvroDeserializer<Alert> d = new AvroDeserializer<>(Alert.class);
        return alertsOut.readValuesToList().stream().map(d::decode).toList();
    }

    private List<EditRequest> edits() {
        AvroDeserializer<EditRequest> d = new AvroDeserializer<>(EditRequest.class);
        return editsOut.readValuesToList().stream().map(d::decode).toList();
    }

    private List<GuardDecision> decisions() {
        AvroDeserializer<GuardDecision> d = new AvroDeserializer<>(GuardDecision.class);
        return guardOut.readValuesToList().stream().map(d::decode).toList();
    }

    /** What the topology itself wrote to alerts.raw (the guard's alerts; the test's own inputs are not outputs). */
    private List<Alert> rawAlerts() {
        AvroDeserializer<Alert> d = new AvroDeserializer<>(Alert.class);
        return rawOut.readValuesToList().stream().map(d::decode).toList();
    }

    private List<DeadLetter> deadLetters() {
        AvroDeserializer<DeadLetter> d = new AvroDeserializer<>(DeadLetter.class);
        return deadOut.readValuesToList().stream().map(d::decode).toList();
    }

    @Test
    void registryHoldsValidRunsAndDeadLettersBadOnes() {
        KeyValueStore<String, RunInfo> store = driver.getKeyValueStore(CurvewatchTopology.RUN_REGISTRY_STORE);
        assertEquals("mlp", store.get("run-1").getModel());
        runsIn.pipeInput(bytes("run-x"), new byte[] {(byte) 0xC3, 1, 2}); // truncated
        RunInfo noLayers = RunInfo.newBuilder().setRunId("run-y").setModel("m").setCreatedMs(1).setLayers(List.of()).build();
        runsIn.pipeInput(bytes("run-y"), runs.serialize(T.runs(), noLayers));
        runsIn.pipeInput(bytes("other"), runs.serialize(T.runs(), store.get("run-1"))); // under the wrong key
        List<DeadLetter> dead = deadLetters();
        assertEquals(List.of("TRUNCATED", "INVALID_FIELD", "KEY_MISMATCH"), dead.stream().map(DeadLetter::getReasonCode).toList());
        assertTrue(dead.get(1).getReason().contains("watches no layer"), dead.get(1).getReason());
        assertEquals(T.runs(), dead.get(0).getTopic());
        assertEquals(3, dead.get(0).getOriginalSize());
        assertEquals("streams:cw-test", dead.get(0).getComponent());
        assertNull(store.get("run-x"));
        assertNull(store.get("run-y"));
        runsIn.pipeInput(bytes("run-1"), (byte[]) null); // tombstone: the run is deregistered
        assertNull(store.get("run-1"));
    }

    @Test
    void repeatsAreDeduplicatedAndEscalationsPublished() {
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.FIRING, 10, 100));
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.FIRING, 20, 200));
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.FIRING, 30, 300));
        List<Alert> out = published();
        assertEquals(1, out.size(), "three evaluations of one condition are one alert");
        send(alert("run-1", "fc2", Severity.CRITICAL, AlertStatus.FIRING, 40, 400));
        out = published();
        assertEquals(1, out.size());
        assertEquals(Severity.CRITICAL, out.get(0).getSeverity());
        assertEquals(100, out.get(0).getFirstSeenMs(), "an escalation keeps the episode's first-seen time");
        Alert state = (Alert) driver.getKeyValueStore(CurvewatchTopology.ALERT_STATE_STORE).get("run-1.fc2.gap");
        assertEquals(40, state.getStep());
    }

    @Test
    void publishedAlertsCarryRoutingHeaders() {
        send(alert("run-1", "fc1", Severity.WARNING, AlertStatus.FIRING, 5, 50));
        TestRecord<String, byte[]> r = alertsOut.readRecord();
        assertEquals("run-1.fc1.gap", r.key());
        assertEquals("run-1", header(r, "run"));
        assertEquals("WARNING", header(r, "severity"));
        assertEquals("FIRING", header(r, "status"));
        assertEquals("fc1", header(r, "layer"));
    }

    private static String header(TestRecord<?, ?> r, String name) {
        Header h = r.headers().lastHeader(name);
        return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }

    @Test
    void aResolutionIsPublishedOnlyAfterTheHoldAndAFlapIsSuppressed() {
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.FIRING, 10, 100));
        assertEquals(1, published().size());
        // resolves, fires again within the hold: neither is published
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.RESOLVED, 11, 110));
        driver.advanceWallClockTime(Duration.ofMillis(HOLD_MS / 2));
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.FIRING, 12, 120));
        driver.advanceWallClockTime(Duration.ofMillis(2 * HOLD_MS));
        assertEquals(List.of(), published(), "a flap inside the hold changes nothing");
        // resolves and stays resolved past the hold: one RESOLVED
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.RESOLVED, 13, 130));
        driver.advanceWallClockTime(Duration.ofMillis(HOLD_MS - 1_000));
        assertEquals(List.of(), published(), "not before the hold has passed");
        driver.advanceWallClockTime(Duration.ofMillis(2_000));
        List<Alert> out = published();
        assertEquals(1, out.size());
        assertEquals(AlertStatus.RESOLVED, out.get(0).getStatus());
        assertEquals(100, out.get(0).getFirstSeenMs());
        // the next firing is a new episode
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.FIRING, 50, 500));
        assertEquals(500, published().get(0).getFirstSeenMs());
        // a RESOLVED for something not firing changes nothing
        send(alert("run-1", "fc1", Severity.WARNING, AlertStatus.RESOLVED, 51, 510));
        driver.advanceWallClockTime(Duration.ofMillis(2 * HOLD_MS));
        assertEquals(List.of(), published());
    }

    @Test
    void theGuardEditsOncePerSnapshotAndSaysWhyForEveryFiringEvaluation() {
        send(alert("run-1", "fc2", Severity.WARNING, AlertStatus.FIRING, 10, 100));
        assertEquals(List.of(), edits(), "WARNING is below the gap-critical rule and run-1 is not prod-*");
        List<GuardDecision> skipped = decisions();
        assertEquals(1, skipped.size());
        assertEquals(GuardAction.SKIP, skipped.get(0).getAction());
        send(alert("run-1", "fc2", Severity.CRITICAL, AlertStatus.FIRING, 20, 200));
        List<EditRequest> out = edits();
        assertEquals(1, out.size());
        EditRequest r = out.get(0);
        assertEquals("run-1", r.getRunId());
        assertEquals(List.of(new LayerRho("fc2", -1.0)), r.getLayers());
        assertEquals("rule:gap-critical", r.getRequester());
        assertEquals("run-1.fc2.gap", r.getAlertFingerprint());
        assertTrue(r.getIdempotencyKey().startsWith("rule:gap-critical:") && r.getIdempotencyKey().endsWith(":1"), r.getIdempotencyKey());
        GuardDecision edit = decisions().get(0);
        assertEquals(GuardAction.EDIT, edit.getAction());
        assertEquals(r.getIdempotencyKey(), edit.getIdempotencyKey());
        assertEquals("streams:cw-test", edit.getSource());
        // a repeat of the same firing condition (de-duplicated on the alerts topic) reaches the guard: it waits
        send(alert("run-1", "fc2", Severity.CRITICAL, AlertStatus.FIRING, 30, 300));
        assertEquals(List.of(), edits(), "no second edit before the first snapshot is applied");
        assertEquals(GuardAction.SKIP, decisions().get(0).getAction());
        // the trainer applies it; past the cooldown a repeat edits again, escalated to every watched layer
        guardIn.pipeInput(bytes("run-1"), guard.serialize(T.guardDecisions(), GuardDecision.newBuilder().setId("t1").setRunId("run-1")
                .setStep(35).setAction(GuardAction.APPLIED).setReason("loaded").setSource("trainer:run-1")
                .setIdempotencyKey(r.getIdempotencyKey()).setLayers(List.of(new LayerRho("fc2", 0.6))).setCreatedMs(1).build()));
        assertEquals(List.of(), decisions(), "feedback is no decision of the guard's");
        send(alert("run-1", "fc2", Severity.CRITICAL, AlertStatus.FIRING, 35 + EditRule.Limits.DEFAULTS.cooldownSteps(), 400));
        out = edits();
        assertEquals(1, out.size());
        assertEquals(List.of(new LayerRho("fc1", -1.0), new LayerRho("fc2", -1.0)).stream().map(LayerRho::getLayer).sorted().toList(),
                out.get(0).getLayers().stream().map(LayerRho::getLayer).sorted().toList());
        assertEquals(GuardAction.ESCALATE, decisions().get(0).getAction());
        // prod runs: any WARNING+ alert edits fc1 and fc2 at a fixed rho
        send(alert("prod-7", "fc1", Severity.WARNING, AlertStatus.FIRING, 5, 50));
        out = edits();
        assertEquals(1, out.size());
        assertEquals(List.of(new LayerRho("fc1", 0.9), new LayerRho("fc2", 0.9)), out.get(0).getLayers());
        assertEquals("prod-7", out.get(0).getRunId());
    }

    @Test
    void aTrainerThatSaysItDoesNotApplyRaisesAGuardAlertAndBadDecisionsAreDeadLetters() {
        send(alert("run-1", "fc1", Severity.CRITICAL, AlertStatus.FIRING, 10, 100));
        String key = edits().get(0).getIdempotencyKey();
        decisions();
        published();
        guardIn.pipeInput(bytes("run-1"), guard.serialize(T.guardDecisions(), GuardDecision.newBuilder().setId("t1").setRunId("run-1")
                .setStep(11).setAction(GuardAction.NOT_APPLIED).setReason("verify only").setSource("trainer:run-1")
                .setIdempotencyKey(key).setLayers(List.of(new LayerRho("fc1", 0.6))).setCreatedMs(1).build()));
        List<Alert> raised = rawAlerts();
        assertEquals(1, raised.size());
        assertEquals("guard-not-applied", raised.get(0).getRule());
        // it comes back through alerts.raw, validated and published like any alert
        alertsIn.pipeInput(bytes(raised.get(0).getFingerprint()), alerts.serialize(T.alertsRaw(), raised.get(0)));
        assertEquals(List.of("guard-not-applied"), published().stream().map(Alert::getRule).toList());
        assertEquals(List.of(), decisions(), "the guard's own alert is no trigger");
        send(alert("run-1", "fc1", Severity.CRITICAL, AlertStatus.FIRING, 500, 500));
        assertEquals(List.of(), edits());
        assertTrue(decisions().get(0).getReason().contains("not applied"));
        guardIn.pipeInput(bytes("run-1"), new byte[] {1, 2, 3});
        assertEquals(List.of("TRUNCATED"), deadLetters().stream().map(DeadLetter::getReasonCode).toList());
    }

    @Test
    void badAlertsBecomeDeadLettersWithReasonsAndTheStreamGoesOn() {
        send(alert("run-zzz", "fc1", Severity.CRITICAL, AlertStatus.FIRING, 1, 10));
        send(alert("run-1", "fc9", Severity.CRITICAL, AlertStatus.FIRING, 1, 10));
        Alert good = alert("run-1", "fc1", Severity.WARNING, AlertStatus.FIRING, 1, 10);
        alertsIn.pipeInput(bytes("wrong-key"), alerts.serialize(T.alertsRaw(), good));
        byte[] full = alerts.serialize(T.alertsRaw(), good);
        alertsIn.pipeInput(bytes(good.getFingerprint()), Arrays.copyOf(full, full.length - 5));
        send(Alert.newBuilder(good).setValue(Double.NaN).build());
        send(Alert.newBuilder(good).setSummary("x".repeat(80)).build());
        alertsIn.pipeInput(bytes(good.getFingerprint()), runs.serialize(T.runs(), (RunInfo) driver
                .getKeyValueStore(CurvewatchTopology.RUN_REGISTRY_STORE).get("run-1"))); // a RunInfo, not an Alert
        send(good);
        assertEquals(List.of("UNKNOWN_RUN", "UNKNOWN_LAYER", "KEY_MISMATCH", "TRUNCATED", "NON_FINITE", "INVALID_FIELD",
                        "WRONG_TYPE"),
                deadLetters().stream().map(DeadLetter::getReasonCode).toList());
        assertEquals(1, published().size(), "the good alert after seven bad ones is published");
    }

    @Test
    void deadLettersAreCountedByTopicAndReason() {
        AvroSerializer<DeadLetter> dl = new AvroSerializer<>(DeadLetter.class);
        DeadLetter d = DeadLetter.newBuilder().setTopic("curvewatch.captures").setPartition(0).setOffset(1)
                .setReasonCode("NON_FINITE").setReason("nan").setComponent("worker:w1").setFailedMs(1).build();
        deadIn.pipeInput(bytes("k"), dl.serialize(T.deadLetters(), d));
        deadIn.pipeInput(bytes("k"), dl.serialize(T.deadLetters(), d));
        deadIn.pipeInput(bytes("k"), new byte[] {1, 2, 3});
        KeyValueStore<String, Long> counts = driver.getKeyValueStore(CurvewatchTopology.DEAD_LETTER_COUNTS_STORE);
        assertEquals(2L, counts.get("curvewatch.captures/NON_FINITE"));
        assertEquals(1L, counts.get("?/UNDECODABLE"));
        // the topology's own dead letters reach the counts through the topic as well (the driver
        // feeds a sink's topic back to the source reading it, as the broker would)
        runsIn.pipeInput(bytes("run-bad"), new byte[] {0});
        assertEquals(1, deadOut.readRecordsToList().size());
        assertEquals(1L, counts.get("curvewatch.runs/TRUNCATED"));
    }
}
