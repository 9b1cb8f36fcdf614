package dev.curvewatch.service.internal;

import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** runs.max is a bound everywhere: registrations, runs seen in factors, the history replay, snapshots, alert state. */
class RegistryTest {
    static RunInfo run(String id) {
        return RunInfo.newBuilder().setRunId(id).setModel("m").setSource("t").setCreatedMs(1)
                .setLayers(List.of(LayerInfo.newBuilder().setName("fc").setDIn(4).setDOut(3).build())).build();
    }

    static Signal gap(String run, double v) {
        return Signal.newBuilder().setRunId(run).setLayer("fc").setStep(1).setName("memorization_gap").setValue(v)
                .setFactorVersion(1).setTimestampMs(1).build();
    }

    static SnapshotEvent snapshot(String run, String id) {
        return SnapshotEvent.newBuilder().setSnapshotId(id).setRunId(run).setStep(1).setIdempotencyKey("k-" + id)
                .setUri(run + "/" + id + ".safetensors").setSha256("0".repeat(64)).setSizeBytes(8).setDtype(DType.FLOAT32)
                .setLayers(List.of(new LayerRho("fc", 0.9))).setFactorVersions(Map.of("fc", 1L)).setCodeVersion("t").setCreatedMs(1).build();
    }

    @Test
    void everyWayOfAddingARunForgetsTheLeastRecentlyActiveBeyondTheBound() {
        Registry reg = new Registry(new SignalHistory(10), 10, 10, 2);
        List<String> forgotten = new ArrayList<>();
        reg.onForget(forgotten::add);
        reg.register(run("a"), 1);
        reg.layerState("b", "fc", 2); // a run seen only in factors so far
        reg.history().add(gap("a", 0.1));
        assertTrue(reg.snapshot(snapshot("a", "s1")));
        assertEquals(List.of("a", "b"), reg.runIds());
        // the old layerState created runs without any bound
        reg.layerState("c", "fc", 3);
        assertEquals(List.of("b", "c"), reg.runIds());
        assertEquals(List.of("a"), forgotten);
        assertTrue(reg.signal("a", "fc", "memorization_gap").isEmpty(), "history of a forgotten run");
        assertTrue(reg.snapshots("a").isEmpty(), "snapshot list of a forgotten run");
        assertTrue(reg.snapshotById("s1").isEmpty());
        assertTrue(reg.answered("a", "k-s1"), "answered keys stay: a run that comes back is not edited twice for one key");
        reg.register(run("d"), 4);
        assertEquals(List.of("c", "d"), reg.runIds());
        assertEquals(List.of("a", "b"), forgotten);
        reg.layerState("c", "fc", 5); // activity keeps a run
        reg.register(run("e"), 6);
        assertEquals(List.of("c", "e"), reg.runIds());
    }

    @Test
    void theHistoryReplayNeverBringsBackAForgottenRun() {
        Registry reg = new Registry(new SignalHistory(10), 10, 10, 1);
        reg.register(run("old"), 1);
        reg.register(run("new"), 2);
        assertEquals(List.of("new"), reg.runIds());
        assertTrue(reg.layerStateIfRoom("old", "fc", 3).isEmpty(), "no room without forgetting 'new'");
        assertTrue(reg.layerStateIfRoom("new", "fc2", 3).isPresent(), "a held run takes its layers");
        assertEquals(List.of("new"), reg.runIds());
        boolean[] ran = {false};
        assertFalse(reg.ifHeld("old", () -> ran[0] = true));
        assertFalse(ran[0]);
        assertTrue(reg.ifHeld("new", () -> ran[0] = true));
        assertTrue(ran[0]);
        assertFalse(reg.snapshot(snapshot("old", "s9")), "a snapshot of a forgotten run is not listed");
        assertTrue(reg.snapshots("old").isEmpty());
    }

    @Test
    void alertStateOfAForgottenRunIsDropped() {
        AlertEvaluator alerts = new AlertEvaluator(List.of(AlertEvaluatorTest.threshold("high", 0.2, 1)));
        Registry reg = new Registry(new SignalHistory(10), 10, 10, 1);
        reg.onForget(alerts::forgetRun);
        reg.register(run("a"), 1);
        assertEquals(1, alerts.evaluate(gap("a", 0.5), AlertEvaluator.Context.NONE, 1, true).size());
        assertEquals(1, alerts.firingCount());
        reg.register(run("b"), 2);
        assertEquals(0, alerts.firingCount());
        assertEquals(0, alerts.stateCount());
    }
}
