package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.workers.TestCaptures;
import dev.curvewatch.workers.WorkerMetrics;
import org.junit.jupiter.api.Test;

import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LayerAccumulationTest {
    private static final Function<String, String> NOT_REFUSED = key -> null;

    private final OwnedLayers layers = new OwnedLayers();
    private final WorkerMetrics metrics = new WorkerMetrics();

    private LayerAccumulation accumulation(int maxSide, long budgetBytes) {
        return new LayerAccumulation(layers, new FactorBudget(maxSide, budgetBytes, Precision.FLOAT64), Precision.FLOAT64, metrics);
    }

    private static CaptureValidator.Accepted accepted(RunInfo run, LayerInfo layer, int i, int tokens) {
        Capture c = TestCaptures.capture(7, run.getRunId(), layer, i, tokens, i);
        return new CaptureValidator.Accepted(c, run, layer, run.getRunId() + "/" + layer.getName());
    }

    @Test
    void takesALayerOnAtItsFirstCaptureAndSumsExactlyAsAnAccumulatorAlone() {
        LayerInfo l = TestCaptures.layer("fc", 6, 4);
        RunInfo run = TestCaptures.run("r", FactorMode.CUMULATIVE, 1.0, l);
        LayerAccumulation acc = accumulation(1024, 1L << 30);
        FactorAccumulator refA = FactorAccumulator.cumulative(6, Precision.FLOAT64);
        FactorAccumulator refG = FactorAccumulator.cumulative(4, Precision.FLOAT64);
        for (int i = 0; i < 3; i++) {
            assertEquals(5, acc.add(accepted(run, l, i, 5), 2, NOT_REFUSED));
            refA.add(i, TestCaptures.activations(7, "fc", i, 5, 6), 5);
            refG.add(i, TestCaptures.gradients(7, "fc", i, 5, 4), 5);
        }
        LayerFactors lf = layers.get("r/fc");
        assertEquals(2, lf.partition);
        assertEquals(3, lf.captures);
        assertTrue(lf.dirty);
        assertArrayEquals(refA.sum(), lf.a.sum());
        assertArrayEquals(refG.sum(), lf.g.sum());
        assertEquals(3, metrics.counter("curvewatch_worker_records_total", "result", "accumulated"));
        assertEquals(15, metrics.counter("curvewatch_worker_tokens_total"));
        assertEquals(3 * 2.0 * 5 * (36 + 16), metrics.counter("curvewatch_worker_accumulate_flops_total"));
    }

    @Test
    void refusesLayersOverTheBudgetOrRefusedAtRestoreAndChangedShapes() {
        LayerInfo big = TestCaptures.layer("big", 40, 4);
        LayerInfo fc = TestCaptures.layer("fc", 6, 4);
        RunInfo run = TestCaptures.run("r", FactorMode.CUMULATIVE, 1.0, big, fc);
        LayerAccumulation acc = accumulation(32, 1L << 30);
        InvalidRecordException side = assertThrows(InvalidRecordException.class, () -> acc.add(accepted(run, big, 0, 3), 0, NOT_REFUSED));
        assertEquals(RejectReason.OVERSIZED, side.reason());
        assertTrue(side.getMessage().contains("max.layer.side 32"), side.getMessage());
        assertNull(layers.get("r/big"));

        InvalidRecordException restore = assertThrows(InvalidRecordException.class,
                () -> acc.add(accepted(run, fc, 0, 3), 0, key -> "its checkpoint (version 4) could not be restored"));
        assertEquals(RejectReason.OVERSIZED, restore.reason());
        assertEquals("OVERSIZED: its checkpoint (version 4) could not be restored", restore.getMessage());

        acc.add(accepted(run, fc, 0, 3), 0, NOT_REFUSED);
        LayerInfo reshaped = TestCaptures.layer("fc", 8, 4);
        RunInfo again = TestCaptures.run("r", FactorMode.CUMULATIVE, 1.0, reshaped);
        InvalidRecordException shape = assertThrows(InvalidRecordException.class, () -> acc.add(accepted(again, reshaped, 1, 3), 0, NOT_REFUSED));
        assertEquals(RejectReason.SHAPE_MISMATCH, shape.reason());
        assertEquals(1, layers.get("r/fc").captures, "nothing added by a refused capture");
    }

    @Test
    void refusesAnEmaRunWithADecayOutsideZeroToOne() {
        LayerInfo l = TestCaptures.layer("fc", 4, 4);
        RunInfo run = TestCaptures.run("r", FactorMode.EMA, 1.5, l);
        InvalidRecordException e = assertThrows(InvalidRecordException.class,
                () -> accumulation(1024, 1L << 30).add(accepted(run, l, 0, 2), 0, NOT_REFUSED));
        assertEquals(RejectReason.INVALID_FIELD, e.reason());
        assertEquals(0, layers.count());
    }
}
