package dev.curvewatch.service.internal;

import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.schemas.WeightAssembler;
import org.junit.jupiter.api.Test;

import java.util.List;
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
}
