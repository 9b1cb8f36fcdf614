package dev.curvewatch.service.internal;

import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.WeightAssembler;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The checks a REST edit meets at the call (the edit thread's own): 404, 409 with the reason, or nothing to say. */
class EditPlanTest {
    final Registry registry = new Registry(new SignalHistory(10), 10, 10, 10);

    Registry.Run run() {
        return registry.run("run-1").orElseThrow();
    }

    Optional<EditPlan.Refusal> refusal(LayerRho... layers) {
        return EditPlan.refusal(List.of(layers), run(), registry);
    }

    /** A registered 2 x 3 layer with eigenbases and a weight, not calibrated. */
    LayerState ready() {
        registry.register(EditRequestsTest.run("run-1", 3, 2), 1);
        LayerState l = registry.existing("run-1", "fc").orElseThrow();
        l.refreshed(LayerRefreshTest.refresher().refresh(new LayerRefresh.Input("run-1", "fc", 1, 5, 100, 3, 2,
                LayerRefreshTest.spd(3, 1, 0), LayerRefreshTest.spd(2, 2, 0)), null, null), 2);
        l.weight(new WeightAssembler.Assembled("run-1", "fc", 9, 2, 3, new float[6], null));
        return l;
    }

    @Test
    void anUnknownLayerIs404AndANotCalibratedOneIs409WithTheReason() {
        LayerState l = ready();
        assertEquals(404, refusal(new LayerRho("nope", 0.9)).orElseThrow().status());
        EditPlan.Refusal notCalibrated = refusal(new LayerRho("fc", 0.0)).orElseThrow();
        assertEquals(409, notCalibrated.status());
        assertTrue(notCalibrated.message().startsWith("NOT_READY: layer 'fc' has no calibrated rho: no candidate sent yet"),
                notCalibrated.message());
        assertTrue(notCalibrated.message().endsWith("give an explicit rho to edit it anyway"), notCalibrated.message());
        assertEquals(409, refusal().orElseThrow().status(), "no layers = every watched layer at its calibrated rho");
        assertEquals(Optional.empty(), refusal(new LayerRho("fc", 0.9)), "an explicit rho needs no calibration");
        assertEquals(400, refusal(new LayerRho("fc", 0.9), new LayerRho("fc", 0.8)).orElseThrow().status(), "listed twice");
        // an invalid latest calibration is the reason given
        l.calibrated(DegenerateCalibrationTest.candidate(), Calibration.calibrate(DegenerateCalibrationTest.result(null, false),
                DegenerateCalibrationTest.candidate(), 0.01, 0.05), 40);
        assertTrue(refusal(new LayerRho("fc", 0.0)).orElseThrow().message().contains("calibration invalid at v3: constant probe loss"),
                refusal(new LayerRho("fc", 0.0)).orElseThrow().message());
    }

    @Test
    void noWeightOrNoEigenbasisIs409AndABasisBeingComputedIsWaitedFor() {
        registry.register(EditRequestsTest.run("run-1", 3, 2), 1);
        LayerState l = registry.existing("run-1", "fc").orElseThrow();
        EditPlan.Refusal noWeight = refusal(new LayerRho("fc", 0.9)).orElseThrow();
        assertEquals(409, noWeight.status());
        assertTrue(noWeight.message().contains("has no weight snapshot yet"), noWeight.message());
        l.weight(new WeightAssembler.Assembled("run-1", "fc", 9, 2, 3, new float[6], null));
        assertTrue(refusal(new LayerRho("fc", 0.9)).orElseThrow().message().contains("has no eigenbasis yet"));
        l.manifest(LayerStateTest.manifest(1), 0);
        l.start(0); // after a restart: factors known, the basis on its way
        assertEquals(Optional.empty(), refusal(new LayerRho("fc", 0.9)), "the edit thread waits edit.wait.ms for it");
    }

    @Test
    void aLayerTooLargeToCalibrateSaysSo() {
        registry.register(EditRequestsTest.run("run-1", 3, 2), 1);
        LayerState l = registry.existing("run-1", "fc").orElseThrow();
        l.refreshed(LayerRefreshTest.refresher(1, 1 << 20).refresh(new LayerRefresh.Input("run-1", "fc", 1, 5, 100, 3, 2,
                LayerRefreshTest.spd(3, 1, 0), LayerRefreshTest.spd(2, 2, 0)), null, null), 2);
        l.weight(new WeightAssembler.Assembled("run-1", "fc", 9, 2, 3, new float[6], null));
        EditPlan.Refusal r = refusal(new LayerRho("fc", 0.0)).orElseThrow();
        assertEquals(409, r.status());
        assertTrue(r.message().contains("calibration=too_large"), r.message());
    }

    /** Two 2 x 3 layers with eigenbases and weights, each calibrated on an accuracy curve losing lost[k] of 95 correct probes at candidate k. */
    void twoCalibrated(int[] lostFc, int[] lostFc2) {
        registry.register(RunInfo.newBuilder().setRunId("run-1").setModel("m").setSource("t").setCreatedMs(1).setLayers(List.of(
                LayerInfo.newBuilder().setName("fc").setDIn(3).setDOut(2).build(),
                LayerInfo.newBuilder().setName("fc2").setDIn(3).setDOut(2).build())).build(), 1);
        Map<String, int[]> lost = Map.of("fc", lostFc, "fc2", lostFc2);
        for (String name : List.of("fc", "fc2")) {
            LayerState l = registry.existing("run-1", name).orElseThrow();
            l.refreshed(LayerRefreshTest.refresher().refresh(new LayerRefresh.Input("run-1", name, 1, 5, 100, 3, 2,
                    LayerRefreshTest.spd(3, 1, 0), LayerRefreshTest.spd(2, 2, 0)), null, null), 2);
            l.weight(new WeightAssembler.Assembled("run-1", name, 9, 2, 3, new float[6], null));
            int[] correct = new int[CalibrationTest.RHOS.length];
            for (int k = 0; k < correct.length; k++) {
                correct[k] = 95 - lost.get(name)[k];
            }
            PendingCandidate c = CalibrationTest.candidate();
            l.calibrated(c, Calibration.calibrate(CalibrationTest.accuracyCurve(100, 10, 95, correct), c, 0.04, 1), 40);
        }
    }

    static int[] losing(int atMostAggressive) {
        int[] lost = new int[CalibrationTest.RHOS.length];
        for (int k = 0; k < lost.length; k++) {
            lost[k] = Math.max(0, atMostAggressive - k);
        }
        return lost;
    }

    Map<String, Double> planned(LayerRho... layers) {
        return EditPlan.inputs(List.of(layers), run(), registry).stream()
                .collect(Collectors.toMap(SnapshotEditor.LayerInput::layer, SnapshotEditor.LayerInput::rho));
    }

    @Test
    void layersAtTheirCalibratedRhoShareOneTolerance() {
        // tolerance 4 of 100 probes; fc loses 8 - k at candidate k, fc2 6 - k
        twoCalibrated(losing(8), losing(6));
        double[] rhos = CalibrationTest.RHOS;
        assertEquals(Map.of("fc", rhos[4]), planned(new LayerRho("fc", 0.0)), "alone: its own calibrated rho (4 lost)");
        assertEquals(Map.of("fc2", rhos[2]), planned(new LayerRho("fc2", 0.0)));
        // together: 2 + 2 lost, the largest equal share
        assertEquals(Map.of("fc", rhos[6], "fc2", rhos[4]), planned(new LayerRho("fc", 0.0), new LayerRho("fc2", 0.0)));
        assertEquals(Map.of("fc", rhos[6], "fc2", rhos[4]), planned(), "no layers named: every watched layer, jointly");
        assertEquals(Map.of("fc", 0.5, "fc2", rhos[2]), planned(new LayerRho("fc", 0.5), new LayerRho("fc2", 0.0)),
                "an explicit rho is the caller's: one calibrated layer keeps its own");
    }

    @Test
    void theJointChoiceLeavesOutALayerNoShareCanEditAndSaysWhenItCannotChoose() {
        int[] never = new int[CalibrationTest.RHOS.length];
        java.util.Arrays.fill(never, 5); // 5 lost at every candidate: beyond the tolerance, calibrated rho 1
        twoCalibrated(never, losing(6));
        assertEquals(Map.of("fc2", CalibrationTest.RHOS[2]), planned(), "fc is left out, fc2 gets the whole tolerance");
        registry.existing("run-1", "fc2").orElseThrow().calibrated(CalibrationTest.candidate(), Calibration.calibrate(
                CalibrationTest.accuracyCurve(100, 10, 95, new int[CalibrationTest.RHOS.length]), CalibrationTest.candidate(), 0.04, 1), 50);
        EditPlan.Refusal none = refusal().orElseThrow();
        assertEquals(409, none.status());
        assertTrue(none.message().contains("no layer of the joint edit of [fc, fc2]"), none.message());
        // after a restart the rho comes from the history, without its probe costs
        registry.existing("run-1", "fc2").orElseThrow().calibratedFromHistory(99, 0.9);
        EditPlan.Refusal restarted = refusal().orElseThrow();
        assertEquals(409, restarted.status());
        assertTrue(restarted.message().contains("layer 'fc2': its calibrated rho comes from the service's history"), restarted.message());
        assertEquals(Optional.empty(), refusal(new LayerRho("fc2", 0.0)), "alone it is edited at the rho of the history");
    }
}
