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
        l.sent(new PendingCandidate("c1", "run-1", "fc", 1, 1, new double[]{0.9}, new double[]{0.1}, new long[]{3}, 6, 0), new int[]{1, 1}, false);
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

    static PendingCandidate candidate(String id, long version) {
        return new PendingCandidate(id, "run-1", "fc", version, version, new double[]{0.9}, new double[]{0.1}, new long[]{3}, 6, 0);
    }

    @Test
    void aDeclinedCandidateEndsItsCalibrationAtOnceAndBacksOff() {
        LayerState l = new LayerState("run-1", "fc", new LayerState.Pacing(new CandidatePacer.Settings(20, 200, 0), 1));
        PendingCandidate c = candidate("c1", 1);
        l.sent(c, new int[]{1, 1}, false);
        assertTrue(l.declined(c, "answer-time budget spent (12% of training)"));
        assertFalse(l.awaitingAnswer(), "no timeout to wait for");
        assertEquals("candidate declined at v1: answer-time budget spent (12% of training)", l.status().status());
        assertEquals(1, l.status().candidatesDeclined());
        assertEquals(1, l.status().candidateBackoff());
        assertFalse(l.declined(c, "again"), "only once");
        assertFalse(l.candidateDecision(39, 1).send(), "backed off: 40 steps now");
        assertTrue(l.candidateDecision(41, 1).send());
    }

    @Test
    void aForcedRefreshSendsItsCandidateWhateverThePacing() {
        LayerState l = new LayerState("run-1", "fc", new LayerState.Pacing(new CandidatePacer.Settings(20, 200, 0), 1));
        l.manifest(manifest(1), 0);
        assertTrue(l.candidateDecision(1, Double.NaN).send(), "the first candidate goes out at once");
        PendingCandidate c = candidate("c1", 1);
        l.sent(c, new int[]{1, 1}, false);
        l.answered(c);
        assertFalse(l.candidateDecision(5, 1).send(), "paced: 4 of 20 steps");
        l.forceRefresh();
        // a refresh already in flight when the force came is still paced; the forced one that starts next is not
        assertFalse(l.candidateDecision(6, 1).send(), "the refresh before the forced one started");
        assertTrue(l.due(0, Long.MAX_VALUE), "forced: due with no newer manifest, interval or not");
        l.start(0);
        assertTrue(l.candidateDecision(7, 0).send(), "the forced refresh's candidate: 6 of 20 steps, no drift");
        l.finished();
        PendingCandidate c2 = candidate("c2", 1);
        l.sent(c2, new int[]{1, 1}, false);
        l.answered(c2);
        assertFalse(l.candidateDecision(8, 1).send(), "only that one: pacing is back");
    }

    @Test
    void anInvalidCalibrationKeepsTheLastValidRhoAndSaysWhy() {
        LayerState l = new LayerState("run-1", "fc");
        PendingCandidate c1 = CalibrationTest.candidate();
        Calibration.Outcome good = Calibration.calibrate(CalibrationTest.result(3, 20, 30, true), c1, 0.01, 0.05);
        assertTrue(good.valid());
        l.sent(c1, new int[]{1, 1}, false);
        assertTrue(l.answered(c1));
        l.calibrated(c1, good, 41);
        assertEquals(good.rho(), l.status().calibratedRho());
        assertEquals(1, l.status().calibrationValid());
        Calibration.Outcome vacuous = Calibration.calibrate(
                DegenerateCalibrationTest.result(null, false), DegenerateCalibrationTest.candidate(), 0.01, 0.05);
        assertFalse(vacuous.valid());
        l.calibrated(DegenerateCalibrationTest.candidate(), vacuous, 50);
        assertEquals(good.rho(), l.status().calibratedRho(), "an edit at the calibrated rho uses the last valid one");
        assertEquals(0, l.status().calibrationValid());
        assertTrue(l.status().calibrationProblem().startsWith("calibration invalid at v3: constant probe loss"),
                l.status().calibrationProblem());
        assertEquals(l.status().calibrationProblem(), l.status().status());
    }

    @Test
    void aRhoStuckAtTheGridsEdgeIsAWarning() {
        LayerState l = new LayerState("run-1", "fc");
        PendingCandidate c = CalibrationTest.candidate();
        // every candidate within tolerance (one point lost of 95): the most aggressive rho
        int[] edited = new int[CalibrationTest.RHOS.length];
        java.util.Arrays.fill(edited, 94);
        Calibration.Outcome edge = Calibration.calibrate(CalibrationTest.accuracyCurve(100, 10, 95, edited), c, 0.01, 1);
        assertEquals(-1, edge.rhoAtEdge());
        for (int i = 1; i <= LayerState.EDGE_WARNING_AFTER; i++) {
            assertEquals(null, l.status().warning(), "not after " + (i - 1));
            l.calibrated(c, edge, 40 + i);
        }
        assertTrue(l.status().warning().startsWith("rho at the grid's most aggressive end for 3 calibrations in a row"),
                l.status().warning());
        int[] inside = edited.clone();
        inside[0] = 50;
        l.calibrated(c, Calibration.calibrate(CalibrationTest.accuracyCurve(100, 10, 95, inside), c, 0.01, 1), 50);
        assertEquals(null, l.status().warning(), "an interior rho ends the warning");
    }
}
