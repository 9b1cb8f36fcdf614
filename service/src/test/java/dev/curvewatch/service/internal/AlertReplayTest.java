package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.service.AlertRules;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The alert state a replay of the signals topic rebuilds (a restart, or an instance following another's runs) equals
 * the live one across an applied snapshot: the owner's re-arm markers put the re-arm at its place in every layer's
 * sequence. Shipped default rules (gap-jump, gap-high, gap-regrowth), Kafka's MockProducer as the topic.
 */
class AlertReplayTest {
    private static final CurvewatchTopics TOPICS = CurvewatchTopics.withDefaultPrefix();
    private static final String RUN = "run-1";

    private final MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
    private final Registry registry = new Registry(new SignalHistory(100), 10, 10, 10);
    private final AlertEvaluator live = new AlertEvaluator(AlertRules.defaults());
    private final Outputs out = new Outputs(producer, TOPICS, registry, live, new ServiceMetrics(), null, "service:live", 1 << 20);

    private static Signal gap(String layer, long step, double v) {
        return Signal.newBuilder().setRunId(RUN).setLayer(layer).setStep(step).setName("memorization_gap").setValue(v)
                .setFactorVersion(step).setTimestampMs(step).build();
    }

    private static GuardDecision decision(GuardAction action, long step) {
        return GuardDecision.newBuilder().setId(action + "-1").setRunId(RUN).setStep(step).setAction(action).setReason("test")
                .setSource(action == GuardAction.APPLIED ? "trainer:" + RUN : "service:live").setSnapshotId("snap-1")
                .setIdempotencyKey("rule:gap-guard:ab:1").setLayers(List.of(new LayerRho("fc1", 0.6))).setCreatedMs(1).build();
    }

    private void publish(Signal... s) {
        out.signals(List.of(s), AlertEvaluator.Context.NONE);
    }

    /** What the live service published on the signals topic, grouped by key (= partition), each group in its order. */
    private Map<String, List<Signal>> topicByKey() {
        AvroDeserializer<Signal> d = new AvroDeserializer<>(Signal.class);
        Map<String, List<Signal>> byKey = new LinkedHashMap<>();
        for (ProducerRecord<String, byte[]> r : producer.history()) {
            if (r.topic().equals(TOPICS.signals())) {
                byKey.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(d.decode(r.value()));
            }
        }
        return byKey;
    }

    /** A fresh evaluator fed the topic as Ingest feeds it: partition after partition, the last key first (no order across keys). */
    private AlertEvaluator replayed(boolean withMarkers) {
        AlertEvaluator e = new AlertEvaluator(AlertRules.defaults());
        List<String> keys = new ArrayList<>(topicByKey().keySet());
        keys.sort(Comparator.reverseOrder());
        for (String k : keys) {
            for (Signal s : topicByKey().get(k)) {
                if (withMarkers || !AlertEvaluator.REARM_MARKER.equals(s.getName())) {
                    e.replay(s);
                }
            }
        }
        return e;
    }

    private static List<String> described(List<Alert> alerts) {
        return alerts.stream().map(a -> a.getRule() + " " + a.getLayer() + " " + a.getStatus() + " " + a.getValue() + " > " + a.getThreshold())
                .toList();
    }

    @Test
    void aReplayWithTheReArmMarkersEvaluatesLikeTheServiceThatNeverRestarted(@TempDir Path dir) throws Exception {
        registry.register(RunInfo.newBuilder().setRunId(RUN).setModel("m").setCreatedMs(1).setLayers(List.of(
                LayerInfo.newBuilder().setName("fc1").setDIn(3).setDOut(2).build(),
                LayerInfo.newBuilder().setName("fc2").setDIn(2).setDOut(2).build())).build(), 1);
        GuardWatch guard = new GuardWatch(registry, live, out, new SnapshotStore(dir), "test", 0.02);
        registry.caughtUp();
        for (int step = 10; step < 15; step++) { // the model before the edit: gap-jump's window fills (threshold 0.01 + 0.05)
            publish(gap("fc1", step, 0.01), gap("fc2", step, 0.02), gap(null, step, 0.015));
        }
        publish(gap("fc1", 18, 0.3)); // memorization: gap-jump and gap-high fire
        assertEquals(2, live.firingCount());
        guard.onDecision(decision(GuardAction.APPLIED, 20), true); // the owner re-arms, marks it, answers REARMED
        publish(gap("fc1", 19, 0.4)); // a late value of the old model: no longer evaluated
        publish(gap("fc1", 20, 0.015), gap("fc2", 20, 0.02)); // the edited model's first gaps anchor gap-regrowth (+0.01)

        Map<String, List<Signal>> topic = topicByKey();
        for (String key : List.of(RUN + "/fc1", RUN + "/fc2", RUN)) {
            List<String> names = topic.get(key).stream().map(Signal::getName).toList();
            assertEquals(1, names.stream().filter(AlertEvaluator.REARM_MARKER::equals).count(), key + ": " + names);
        }
        List<String> fc1 = topic.get(RUN + "/fc1").stream().map(s -> s.getName() + "@" + s.getStep()).toList();
        assertEquals(fc1.indexOf("memorization_gap@18") + 1, fc1.indexOf("rearmed@20"), "the marker sits where the re-arm happened: " + fc1);

        // a restart: the guard-decisions history only refills the list, so nothing is published again
        MockProducer<String, byte[]> restartedProducer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        AlertEvaluator restarted = replayed(true);
        Outputs restartedOut = new Outputs(restartedProducer, TOPICS, registry, restarted, new ServiceMetrics(), null, "service:again", 1 << 20);
        GuardWatch again = new GuardWatch(registry, restarted, restartedOut, new SnapshotStore(dir), "test", 0.02);
        again.onDecision(decision(GuardAction.APPLIED, 20), false);
        again.onDecision(decision(GuardAction.REARMED, 20), false);
        again.answerAppliedNowOwned();
        assertTrue(restartedProducer.history().isEmpty(), "a replay is silent: no REARMED, no marker, no alert again");
        assertEquals(live.stateCount(), restarted.stateCount());
        assertEquals(0, restarted.firingCount(), "re-armed: nothing fires, as live");

        AlertEvaluator withoutMarkers = replayed(false); // the replay before the markers: as if no snapshot had been applied
        List<Signal> after = List.of(gap("fc1", 30, 0.05), gap("fc2", 30, 0.02), gap(null, 30, 0.015), gap("fc1", 31, 0.051),
                gap("fc2", 31, 0.05), gap("fc1", 32, 0.012), gap("fc1", 33, 0.07), gap("fc2", 34, 0.3));
        List<String> liveAlerts = new ArrayList<>();
        List<String> restartedAlerts = new ArrayList<>();
        List<String> oldReplayAlerts = new ArrayList<>();
        for (Signal s : after) {
            liveAlerts.addAll(described(live.evaluate(s, AlertEvaluator.Context.NONE, 5000, true)));
            restartedAlerts.addAll(described(restarted.evaluate(s, AlertEvaluator.Context.NONE, 5000, true)));
            oldReplayAlerts.addAll(described(withoutMarkers.evaluate(s, AlertEvaluator.Context.NONE, 5000, true)));
            assertEquals(live.firingCount(), restarted.firingCount(), "after " + s);
        }
        assertEquals(liveAlerts, restartedAlerts);
        // gap 0.05 of fc1 is above the edited model's first gap + 0.01 (0.025), below gap-jump's kept bound (0.06) and gap-high (0.25)
        assertEquals("gap-regrowth fc1 FIRING 0.05 > 0.025", liveAlerts.get(0));
        assertTrue(oldReplayAlerts.stream().noneMatch(a -> a.startsWith("gap-regrowth")),
                "without the markers the restarted service would miss the regrowth: " + oldReplayAlerts);
        assertEquals(List.of(GuardAction.REARMED), producer.history().stream().filter(r -> r.topic().equals(TOPICS.guardDecisions()))
                .map(r -> new AvroDeserializer<>(GuardDecision.class).decode(r.value()).getAction()).toList(), "one REARMED, live");
    }

    @Test
    void aMarkerReArmsOnlyItsOwnLayerSoTheOrderAcrossPartitionsDoesNotMatter() {
        AlertEvaluator e = new AlertEvaluator(AlertRules.defaults());
        for (int step = 1; step <= 4; step++) {
            e.replay(gap("fc1", step, 0.01));
        }
        e.replay(Signal.newBuilder(gap("fc2", 5, 5)).setName(AlertEvaluator.REARM_MARKER).build()); // fc2's re-arm, read first
        e.replay(gap("fc1", 5, 0.3)); // fc1's own marker comes later in its partition: this value is the old model's
        assertEquals(2, e.firingCount(), "fc1 was not re-armed by fc2's marker: gap-jump and gap-high fire");
        e.replay(Signal.newBuilder(gap("fc1", 5, 5)).setName(AlertEvaluator.REARM_MARKER).build());
        assertEquals(0, e.firingCount(), "its own marker re-arms it, silently");
        List<Alert> regrowth = new ArrayList<>();
        regrowth.addAll(e.evaluate(gap("fc2", 6, 0.02), AlertEvaluator.Context.NONE, 1, true)); // fc2: anchor, first seen after its marker
        regrowth.addAll(e.evaluate(gap("fc2", 7, 0.04), AlertEvaluator.Context.NONE, 2, true));
        assertEquals(List.of("gap-regrowth fc2 FIRING 0.04 > 0.03"), described(regrowth),
                "a layer first seen after its marker starts re-armed (after=snapshot active)");
    }
}
