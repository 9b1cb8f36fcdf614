package dev.curvewatch.service.internal;

import dev.curvewatch.avro.FactorManifest;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LayerStateTest {
    static FactorManifest manifest(long version) {
        return FactorManifest.newBuilder().setRunId("run-1").setLayer("fc").setVersion(version).setDIn(3).setDOut(2).setTokenCount(10)
                .setWeight(10).setStepFirst(0).setStepLast(version).setChunksA(1).setChunksG(1).setSha256("").setCreatedMs(1).build();
    }

    @Test
    void aFailedRefreshFreesTheLayerOnlyWhenFinished() {
        LayerState l = new LayerState("run-1", "fc");
        l.manifest(manifest(1), 0);
        l.start(0);
        l.manifest(manifest(2), 0);
        l.failed(new LayerRefresh.Input("run-1", "fc", 1, 1, 10, 3, 2, null, null), "boom", 5);
        assertFalse(l.due(0, 0), "still in flight while its failure is published");
        l.finished();
        assertTrue(l.due(0, 0));
    }

    @Test
    void keptPairsComeBackFromTheHistoryInEitherOrder() {
        LayerState l = new LayerState("run-1", "fc");
        l.calibratedFromHistory(3, 0.9);
        l.keptPairsFromHistory(3, 17);
        assertEquals(17, l.status().keptPairs(), "the old replay set -1 and never read kept_pairs");
        l.keptPairsFromHistory(4, 21); // kept_pairs of v4 before its calibrated_rho (another order)
        assertEquals(17, l.status().keptPairs());
        l.calibratedFromHistory(4, 0.8);
        assertEquals(21, l.status().keptPairs());
        assertEquals(0.8, l.status().calibratedRho());
        l.calibratedFromHistory(5, 0.7);
        assertEquals(-1, l.status().keptPairs(), "v5's kept pairs are not known (yet)");
    }

    @Test
    void aCandidateNotSentIsNotOutstanding() {
        LayerState l = new LayerState("run-1", "fc");
        l.sent(new PendingCandidate("c1", "run-1", "fc", 1, 1, new double[]{0.9}, new double[]{0.1}, new long[]{3}, 6, 0));
        assertTrue(l.awaitingAnswer());
        l.candidateNotSent("c1", "RecordTooLargeException");
        assertFalse(l.awaitingAnswer());
        assertEquals("candidate not sent: RecordTooLargeException", l.status().status());
        l.candidateNotSent("c1", "again");
        assertEquals("candidate not sent: RecordTooLargeException", l.status().status(), "only for a candidate still out");
    }

    @Test
    void aViewPairsStatusAndBasesOfOneMoment() {
        LayerState l = new LayerState("run-1", "fc");
        LayerState.View v = l.view();
        assertEquals("waiting for factors", v.status().status());
        assertEquals(null, v.bases());
    }
}
