package dev.curvewatch.service.internal;

import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ManifestCheckTest {
    static final LayerInfo FC = LayerInfo.newBuilder().setName("fc").setDIn(8).setDOut(4).build();

    static FactorManifest good() {
        return FactorManifest.newBuilder().setRunId("run-1").setLayer("fc").setVersion(2).setDIn(8).setDOut(4).setTokenCount(320)
                .setWeight(320).setStepFirst(0).setStepLast(19).setChunksA(1).setChunksG(1).setSha256("0".repeat(64)).setCreatedMs(1).build();
    }

    static RejectReason reason(FactorManifest m, LayerInfo registered) {
        return assertThrows(InvalidRecordException.class, () -> ManifestCheck.check(m, registered, 1024)).reason();
    }

    @Test
    void sidesAgainstTheRegisteredLayerAndTheConfiguredMaximum() {
        assertDoesNotThrow(() -> ManifestCheck.check(good(), FC, 1024));
        assertDoesNotThrow(() -> ManifestCheck.check(FactorManifest.newBuilder(good()).setDIn(900).setChunksA(3).build(), null, 1024),
                "an unregistered layer: only the maximum applies");
        InvalidRecordException e = assertThrows(InvalidRecordException.class,
                () -> ManifestCheck.check(FactorManifest.newBuilder(good()).setDIn(9).build(), FC, 1024));
        assertEquals(RejectReason.SHAPE_MISMATCH, e.reason());
        assertTrue(e.getMessage().contains("d_in=9") && e.getMessage().contains("d_in=8"), e.getMessage());
        assertEquals(RejectReason.OVERSIZED, reason(FactorManifest.newBuilder(good()).setDOut(1025).build(), null));
        assertEquals(RejectReason.OVERSIZED, reason(FactorManifest.newBuilder(good()).setDIn(1 << 20).build(), null));
    }

    @Test
    void whatTheFactorStateWouldRefuseIsRefusedOnArrival() {
        assertEquals(RejectReason.INVALID_FIELD, reason(FactorManifest.newBuilder(good()).setMode(FactorMode.EMA).setEmaDecay(1.5).build(), FC));
        assertEquals(RejectReason.INVALID_FIELD, reason(FactorManifest.newBuilder(good()).setWeight(0).build(), FC));
        assertEquals(RejectReason.INVALID_FIELD, reason(FactorManifest.newBuilder(good()).setChunksG(-1).build(), FC));
        assertEquals(RejectReason.SHAPE_MISMATCH, reason(FactorManifest.newBuilder(good()).setDIn(0).build(), null));
    }
}
