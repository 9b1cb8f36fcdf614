package dev.curvewatch.schemas;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.LayerInfo;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ContractChecksTest {
    private final Capture good = SampleRecords.capture(new Random(1), "run-1", "fc1", 3, 4, 5, 6);

    private static InvalidRecordException rejected(Runnable check) {
        return assertThrows(InvalidRecordException.class, check::run);
    }

    @Test
    void goodCapturePasses() {
        assertDoesNotThrow(() -> ContractChecks.checkStructure(good));
        assertDoesNotThrow(() -> ContractChecks.checkAgainstLayer(good, new LayerInfo("fc1", 5, 6, false, false)));
        assertDoesNotThrow(() -> ContractChecks.requireFinite(good));
    }

    @Test
    void hostileIdsAreRejected() {
        for (String id : List.of("", "../etc/passwd", "a/b", "x".repeat(129), "run id")) {
            Capture c = Capture.newBuilder(good).setRunId(id).build();
            assertEquals(RejectReason.INVALID_FIELD, rejected(() -> ContractChecks.checkStructure(c)).reason(), id);
        }
    }

    @Test
    void pathSegmentsRefuseDotNames() {
        for (String id : List.of(".", "..", "a/b", "")) {
            assertEquals(RejectReason.INVALID_FIELD, rejected(() -> ContractChecks.requirePathSegment(id, "run_id")).reason(), id);
        }
        assertDoesNotThrow(() -> ContractChecks.requirePathSegment("..a", "run_id"));
        assertDoesNotThrow(() -> ContractChecks.requirePathSegment("run-1.v2", "run_id"));
    }

    @Test
    void runLayerSidesAreBoundedFromBothSides() {
        java.util.function.BiFunction<Integer, Integer, dev.curvewatch.avro.RunInfo> run = (dIn, dOut) -> dev.curvewatch.avro.RunInfo
                .newBuilder().setRunId("r").setModel("m").setCreatedMs(1)
                .setLayers(List.of(new LayerInfo("fc1", dIn, dOut, false, false))).build();
        assertDoesNotThrow(() -> ContractChecks.checkRun(run.apply(ContractChecks.MAX_LAYER_SIDE, 1)));
        assertEquals(46_340, ContractChecks.MAX_LAYER_SIDE);
        assertTrue((long) ContractChecks.MAX_LAYER_SIDE * ContractChecks.MAX_LAYER_SIDE <= ContractChecks.MAX_FACTOR_ELEMENTS);
        assertTrue((long) (ContractChecks.MAX_LAYER_SIDE + 1) * (ContractChecks.MAX_LAYER_SIDE + 1) > ContractChecks.MAX_FACTOR_ELEMENTS);
        for (int[] sides : new int[][]{{0, 5}, {5, 0}, {46_341, 5}, {5, 46_341}, {Integer.MAX_VALUE, 5}}) {
            InvalidRecordException e = rejected(() -> ContractChecks.checkRun(run.apply(sides[0], sides[1])));
            assertEquals(RejectReason.SHAPE_MISMATCH, e.reason());
            assertTrue(e.getMessage().contains("[1, 46340]"), e.getMessage());
        }
    }

    @Test
    void tokenCountsMustAgree() {
        Capture c = Capture.newBuilder(good).setGradients(TensorCodec.ofFloats(new float[3 * 6], 3, 6)).build();
        InvalidRecordException e = rejected(() -> ContractChecks.checkStructure(c));
        assertEquals(RejectReason.SHAPE_MISMATCH, e.reason());
        assertTrue(e.getMessage().contains("4 tokens") && e.getMessage().contains("3"), e.getMessage());
    }

    @Test
    void registeredDimensionsAreEnforced() {
        InvalidRecordException e = rejected(() -> ContractChecks.checkAgainstLayer(good, new LayerInfo("fc1", 7, 6, false, false)));
        assertEquals(RejectReason.SHAPE_MISMATCH, e.reason());
        assertTrue(e.getMessage().contains("d_in=7") && e.getMessage().contains("d_in=5"), e.getMessage());
    }

    @Test
    void nonFiniteValuesAreLocated() {
        float[] a = new float[4 * 5];
        a[2 * 5 + 3] = Float.NaN;
        Capture c = Capture.newBuilder(good).setActivations(TensorCodec.ofFloats(a, 4, 5)).build();
        InvalidRecordException e = rejected(() -> ContractChecks.requireFinite(c));
        assertEquals(RejectReason.NON_FINITE, e.reason());
        assertTrue(e.getMessage().contains("row 2, column 3"), e.getMessage());
    }

    @Test
    void tokenSampleIndexIsBoundsChecked() {
        ByteBuffer idx = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        idx.putInt(0).putInt(1).putInt(1).putInt(2).flip();
        Capture c = Capture.newBuilder(good).setSampleIds(List.of("a", "b")).setTokenSample(idx).build();
        InvalidRecordException e = rejected(() -> ContractChecks.checkStructure(c));
        assertEquals(RejectReason.SHAPE_MISMATCH, e.reason());
        assertTrue(e.getMessage().contains("token 3"), e.getMessage());
    }

    @Test
    void partIndexMustBeInRange() {
        Capture c = Capture.newBuilder(good).setPart(2).setParts(2).build();
        assertEquals(RejectReason.INVALID_FIELD, rejected(() -> ContractChecks.checkStructure(c)).reason());
    }

    private static FactorManifest manifest() {
        return FactorManifest.newBuilder().setRunId("run-1").setLayer("fc1").setVersion(3).setDIn(4).setDOut(3)
                .setTokenCount(10).setWeight(10).setStepFirst(0).setStepLast(7).setChunksA(1).setChunksG(1)
                .setSha256("00").setCreatedMs(3L).build();
    }

    private static RejectReason manifestRejected(java.util.function.UnaryOperator<FactorManifest.Builder> change) {
        FactorManifest m = change.apply(FactorManifest.newBuilder(manifest())).build();
        return rejected(() -> ContractChecks.checkManifest(m)).reason();
    }

    @Test
    void manifestsAreCheckedBeforeAnythingIsAllocatedForThem() {
        assertDoesNotThrow(() -> ContractChecks.checkManifest(manifest()));
        assertDoesNotThrow(() -> ContractChecks.checkManifest(FactorManifest.newBuilder(manifest()).setMode(FactorMode.EMA)
                .setEmaDecay(0.99).setWeight(3.5).setDIn(46340).setChunksA(2048).build()));
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setLayer("../x")));
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setVersion(-1)));
        assertEquals(RejectReason.SHAPE_MISMATCH, manifestRejected(b -> b.setDIn(0)));
        assertEquals(RejectReason.SHAPE_MISMATCH, manifestRejected(b -> b.setDOut(-5)));
        // d^2 beyond one Java array: the old assembly allocated new double[(int) (d * d)] and died on it
        assertEquals(RejectReason.OVERSIZED, manifestRejected(b -> b.setDIn(46341)));
        assertEquals(RejectReason.OVERSIZED, manifestRejected(b -> b.setDOut(Integer.MAX_VALUE)));
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setEmaDecay(0.9)), "CUMULATIVE needs decay 1");
        for (double decay : new double[]{0, -0.5, 1.5, Double.NaN}) {
            assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setMode(FactorMode.EMA).setEmaDecay(decay)), "EMA " + decay);
        }
        for (double weight : new double[]{0, -1, Double.NaN, Double.POSITIVE_INFINITY}) {
            assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setWeight(weight)), "weight " + weight);
        }
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setTokenCount(-1)));
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setCaptures(-1)));
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setStepFirst(8)));
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setChunksA(0)));
        assertEquals(RejectReason.INVALID_FIELD, manifestRejected(b -> b.setChunksG(10)), "more chunks than the 9 elements of G");
    }

    @Test
    void guardDecisionsAreChecked() {
        GuardDecision ok = GuardDecision.newBuilder().setId("g1").setRunId("run-1").setLayer("fc1").setStep(3)
                .setAction(GuardAction.SKIP).setReason("cooldown").setSource("streams:x")
                .setLayers(List.of(new LayerRho("fc1", -1.0))).setCreatedMs(1).build();
        assertDoesNotThrow(() -> ContractChecks.checkGuardDecision(ok));
        assertEquals(RejectReason.INVALID_FIELD, assertThrows(InvalidRecordException.class, () -> ContractChecks.checkGuardDecision(
                GuardDecision.newBuilder(ok).setStep(-1).build())).reason());
        assertEquals(RejectReason.INVALID_FIELD, assertThrows(InvalidRecordException.class, () -> ContractChecks.checkGuardDecision(
                GuardDecision.newBuilder(ok).setReason("x".repeat(ContractChecks.MAX_GUARD_REASON)).build())).reason());
        assertThrows(InvalidRecordException.class, () -> ContractChecks.checkGuardDecision(
                GuardDecision.newBuilder(ok).setLayer("../etc").build()));
        assertThrows(InvalidRecordException.class, () -> ContractChecks.checkGuardDecision(
                GuardDecision.newBuilder(ok).setLayers(List.of(new LayerRho("fc1", Double.NaN))).build()));
    }
}
