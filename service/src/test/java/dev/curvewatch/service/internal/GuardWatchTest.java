package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.WeightAssembler;
import dev.curvewatch.service.AlertRules;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The service's side of the guard on Kafka's MockProducer: re-arm on APPLIED, the harm check, the rollback offered and sent. */
class GuardWatchTest {
    private static final CurvewatchTopics TOPICS = CurvewatchTopics.withDefaultPrefix();
    private final Registry registry = new Registry(new SignalHistory(100), 10, 10, 10);
    private final AlertEvaluator alerts = new AlertEvaluator(AlertRules.defaults());
    private final MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
    private final Outputs out = new Outputs(producer, TOPICS, registry, alerts, new ServiceMetrics(), null, "service:test", 1 << 20);

    private static Signal signal(String name, String layer, long step, double value) {
        return Signal.newBuilder().setRunId("run-1").setLayer(layer).setStep(step).setName(name).setValue(value).setTimestampMs(step).build();
    }

    private <T extends org.apache.avro.specific.SpecificRecord> List<T> sent(String topic, Class<T> type) {
        AvroDeserializer<T> d = new AvroDeserializer<>(type);
        return producer.history().stream().filter(r -> r.topic().equals(topic)).map(r -> d.decode(r.value())).toList();
    }

    private GuardWatch watch(Path dir, double tolerance) throws Exception {
        registry.register(RunInfo.newBuilder().setRunId("run-1").setModel("m").setCreatedMs(1).setLayers(List.of(
                LayerInfo.newBuilder().setName("fc1").setDIn(3).setDOut(2).setHasBias(true).build(),
                LayerInfo.newBuilder().setName("fc2").setDIn(2).setDOut(2).build())).build(), 1);
        registry.layerState("run-1", "fc1", 1).weight(new WeightAssembler.Assembled("run-1", "fc1", 100, 2, 3,
                new float[] {1, 2, 3, 4, 5, 6}, new float[] {7, 8}));
        GuardWatch w = new GuardWatch(registry, alerts, out, new SnapshotStore(dir), "test", tolerance);
        out.onSignal(w::onSignal);
        registry.caughtUp();
        return w;
    }

    private static GuardDecision applied(long step) {
        return GuardDecision.newBuilder().setId("t1").setRunId("run-1").setStep(step).setAction(GuardAction.APPLIED)
                .setReason("loaded").setSource("trainer:run-1").setSnapshotId("snap-1").setIdempotencyKey("rule:gap-guard:ab:1")
                .setLayers(List.of(new LayerRho("fc1", 0.6))).setCreatedMs(1).build();
    }

    @Test
    void anAppliedSnapshotReArmsTheRunAndAnEditThatKeepsProbeAccuracyIsFine(@TempDir Path dir) throws Exception {
        GuardWatch w = watch(dir, 0.02);
        double[] clean = {0.001, 0.002, 0.001, 0.002};
        for (int i = 0; i < clean.length; i++) {
            out.signals(List.of(signal("memorization_gap", "fc1", 10 + i, clean[i])), AlertEvaluator.Context.NONE);
        }
        out.signals(List.of(signal("memorization_gap", "fc1", 90, 0.3), signal(GuardWatch.PROBE_ACCURACY, "fc1", 90, 0.97)),
                AlertEvaluator.Context.NONE);
        assertEquals(2, alerts.firingCount(), "gap-jump and gap-high");
        w.onDecision(applied(120), true);
        assertEquals(0, alerts.firingCount(), "re-armed: the firing rules resolved");
        List<Alert> raw = sent(TOPICS.alertsRaw(), Alert.class);
        assertEquals(AlertStatus.RESOLVED, raw.get(raw.size() - 1).getStatus());
        List<GuardDecision> mine = sent(TOPICS.guardDecisions(), GuardDecision.class);
        assertEquals(GuardAction.REARMED, mine.get(0).getAction());
        assertEquals("0.9700", mine.get(0).getDetails().get("probe_accuracy_before.fc1"));
        out.signals(List.of(signal(GuardWatch.PROBE_ACCURACY, "fc1", 125, 0.96)), AlertEvaluator.Context.NONE);
        assertEquals(1, sent(TOPICS.guardDecisions(), GuardDecision.class).size(), "a drop within the tolerance: nothing more");
        assertEquals(List.of(GuardAction.APPLIED), w.decisions("run-1").stream().map(GuardDecision::getAction).toList(),
                "the list holds what the feed read (its own decisions come back through the topic)");
    }

    @Test
    void anEditThatHurtsProbeAccuracyIsReportedAndItsRollbackOfferedAndSent(@TempDir Path dir) throws Exception {
        GuardWatch w = watch(dir, 0.02);
        out.signals(List.of(signal(GuardWatch.PROBE_ACCURACY, "fc1", 90, 0.97)), AlertEvaluator.Context.NONE);
        w.onDecision(applied(120), true);
        out.signals(List.of(signal(GuardWatch.PROBE_ACCURACY, "fc1", 119, 0.50)), AlertEvaluator.Context.NONE); // the old model
        assertEquals(1, sent(TOPICS.guardDecisions(), GuardDecision.class).size(), "a value of the model before the snapshot counts not");
        out.signals(List.of(signal(GuardWatch.PROBE_ACCURACY, "fc1", 121, 0.90)), AlertEvaluator.Context.NONE);
        List<GuardDecision> mine = sent(TOPICS.guardDecisions(), GuardDecision.class);
        assertEquals(List.of(GuardAction.REARMED, GuardAction.HARMFUL, GuardAction.ROLLBACK_OFFERED),
                mine.stream().map(GuardDecision::getAction).toList());
        assertEquals("0.9000", mine.get(1).getDetails().get("probe_accuracy_after"));
        Alert harm = sent(TOPICS.alertsRaw(), Alert.class).stream().filter(a -> a.getRule().equals("edit-harmful")).findFirst().orElseThrow();
        assertEquals(dev.curvewatch.avro.Severity.CRITICAL, harm.getSeverity());
        dev.curvewatch.schemas.ContractChecks.checkAlert(harm);

        String rollbackId = mine.get(2).getSnapshotId();
        assertTrue(w.rollback("run-1", "snap-unknown").isEmpty());
        assertTrue(sent(TOPICS.snapshots(), SnapshotEvent.class).isEmpty(), "offered, not sent: the trainer applies nothing yet");
        SnapshotEvent e = w.rollback("run-1", rollbackId).orElseThrow();
        assertEquals(List.of(e), sent(TOPICS.snapshots(), SnapshotEvent.class));
        assertEquals("rollback:snap-1", e.getIdempotencyKey());
        assertEquals(dev.curvewatch.avro.SnapshotKind.ROLLBACK, e.getKind());
        assertEquals("snap-1", e.getRestores(), "it undoes the harmful snapshot");
        assertEquals(100, e.getStep());
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve(e.getUri()))) {
            assertArrayEquals(new float[] {1, 2, 3, 4, 5, 6}, f.readFloat32("fc1.weight"), "the weights from before the edit");
            assertArrayEquals(new float[] {7, 8}, f.readFloat32("fc1.bias"));
        }
    }

    @Test
    void anAppliedReadWhileTheSignalsAreStillReplayedIsAnsweredAfterTheReplay(@TempDir Path dir) throws Exception {
        Registry replaying = new Registry(new SignalHistory(100), 10, 10, 10); // a restart, not caught up yet
        replaying.register(RunInfo.newBuilder().setRunId("run-1").setModel("m").setCreatedMs(1).setLayers(List.of(
                LayerInfo.newBuilder().setName("fc1").setDIn(3).setDOut(2).build())).build(), 1);
        Outputs o = new Outputs(producer, TOPICS, replaying, alerts, new ServiceMetrics(), null, "service:test", 1 << 20);
        GuardWatch w = new GuardWatch(replaying, alerts, o, new SnapshotStore(dir), "test", 0.02);
        w.onDecision(applied(120), true);
        w.answerAppliedNowOwned();
        assertTrue(producer.history().isEmpty(), "no re-arm or marker in the middle of the replay");
        replaying.caughtUp();
        w.answerAppliedNowOwned();
        assertEquals(List.of(GuardAction.REARMED), sent(TOPICS.guardDecisions(), GuardDecision.class).stream()
                .map(GuardDecision::getAction).toList());
        assertEquals(List.of(AlertEvaluator.REARM_MARKER, AlertEvaluator.REARM_MARKER), sent(TOPICS.signals(), Signal.class).stream()
                .map(Signal::getName).toList(), "fc1 and the run-level series, after the replayed history");
    }

    @Test
    void anAppliedWhoseMarkersWereReplayedIsNotAnsweredAgainByTheTaker(@TempDir Path dir) throws Exception {
        GuardWatch w = watch(dir, 0.02);
        RunOwnership ownership = RunOwnership.byAssignment(); // another instance owns the run
        ownership.partitions(4);
        registry.ownership(ownership);
        w.onDecision(applied(120), true);
        alerts.replay(Signal.newBuilder(signal(AlertEvaluator.REARM_MARKER, "fc1", 120, 120)).build()); // its owner's re-arm
        ownership.onPartitionsAssigned(List.of(new org.apache.kafka.common.TopicPartition(TOPICS.editRequests(),
                RunOwnership.partitionOf("run-1", 4)))); // taken over before its REARMED was read
        w.answerAppliedNowOwned();
        assertTrue(producer.history().isEmpty(), "answered by the old owner: no second re-arm, marker or REARMED");
        w.onDecision(GuardDecision.newBuilder(applied(200)).setId("t2").setSnapshotId("snap-2").build(), true);
        w.answerAppliedNowOwned();
        assertEquals(List.of(GuardAction.REARMED), sent(TOPICS.guardDecisions(), GuardDecision.class).stream()
                .map(GuardDecision::getAction).toList(), "a later snapshot is answered by the new owner");
    }

    @Test
    void anAppliedReadBeforeThisInstanceOwnsTheRunIsAnsweredOnceItDoes(@TempDir Path dir) throws Exception {
        GuardWatch w = watch(dir, 0.02);
        RunOwnership ownership = RunOwnership.byAssignment(); // start-up: no partition of edit-requests assigned yet
        ownership.partitions(4);
        registry.ownership(ownership);
        out.signals(List.of(signal("memorization_gap", "fc1", 10, 0.001), signal("memorization_gap", "fc1", 11, 0.002),
                signal("memorization_gap", "fc1", 12, 0.001), signal("memorization_gap", "fc1", 13, 0.002)), AlertEvaluator.Context.NONE);
        out.signals(List.of(signal("memorization_gap", "fc1", 90, 0.3)), AlertEvaluator.Context.NONE);
        w.onDecision(applied(120), true);
        w.answerAppliedNowOwned();
        assertTrue(sent(TOPICS.guardDecisions(), GuardDecision.class).isEmpty(), "not owned: the owner answers");
        ownership.onPartitionsAssigned(List.of(new org.apache.kafka.common.TopicPartition(TOPICS.editRequests(),
                RunOwnership.partitionOf("run-1", 4))));
        w.answerAppliedNowOwned();
        List<GuardDecision> mine = sent(TOPICS.guardDecisions(), GuardDecision.class);
        assertEquals(1, mine.size(), mine.toString());
        assertEquals(GuardAction.REARMED, mine.get(0).getAction());
        w.answerAppliedNowOwned();
        assertEquals(1, sent(TOPICS.guardDecisions(), GuardDecision.class).size(), "answered once");
    }

    @Test
    void anAppliedItsOwnerAnsweredIsNotAnsweredAgainOnTakeover(@TempDir Path dir) throws Exception {
        GuardWatch w = watch(dir, 0.02);
        RunOwnership ownership = RunOwnership.byAssignment();
        ownership.partitions(4);
        registry.ownership(ownership);
        w.onDecision(applied(120), true);
        w.onDecision(GuardDecision.newBuilder(applied(120)).setId("s1").setAction(GuardAction.REARMED)
                .setSource("service:other").build(), true);
        ownership.onPartitionsAssigned(List.of(new org.apache.kafka.common.TopicPartition(TOPICS.editRequests(),
                RunOwnership.partitionOf("run-1", 4))));
        w.answerAppliedNowOwned();
        assertTrue(sent(TOPICS.guardDecisions(), GuardDecision.class).isEmpty());
    }
}
