package dev.curvewatch.service.internal;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The pacing rules of {@link CandidatePacer}: trainer steps, drift, back-off; no clock anywhere. */
class CandidatePacerTest {
    static final CandidatePacer.Settings DEFAULTS = new CandidatePacer.Settings(20, 200, 0.01);

    @Test
    void theFirstCandidateGoesOutAtOnceThenOnePerMinStepsWhileTheBasesDrift() {
        CandidatePacer p = new CandidatePacer(DEFAULTS);
        assertTrue(p.refreshed(5, Double.NaN).send(), "the first refresh of a layer");
        p.sent(5);
        CandidatePacer.Decision d = p.refreshed(24, 0.3);
        assertFalse(d.send(), "19 steps < 20");
        assertTrue(d.why().contains("19 of 20 trainer steps"), d.why());
        assertTrue(p.refreshed(25, 0.3).send(), "20 steps and drift");
        p.sent(25);
    }

    @Test
    void aSlowTrainerGetsNoMoreCandidatesPerStepThanAFastOne() {
        // the same 400 steps, refreshed every step (a slow trainer: many wall-clock refreshes per step) or every 10
        for (int every : new int[]{1, 10}) {
            CandidatePacer p = new CandidatePacer(DEFAULTS);
            int sent = 0;
            for (long step = 0; step < 400; step += every) {
                if (p.refreshed(step, 0.05).send()) {
                    p.sent(step);
                    p.answered();
                    sent++;
                }
            }
            assertEquals(20, sent, "one candidate per 20 steps, refreshed every " + every + " step(s)");
        }
    }

    @Test
    void aForcedRefreshSendsForNewerWeightsOnly() {
        CandidatePacer p = new CandidatePacer(DEFAULTS);
        assertTrue(p.refreshed(880, Double.NaN).send());
        p.sent(880);
        assertFalse(p.refreshed(899, 1.0).send(), "19 of 20 steps: paced");
        assertTrue(p.refreshed(899, 0.0, true).send(), "forced, and the weights moved on: the run's final ones get their candidate");
        p.sent(899);
        assertFalse(p.refreshed(899, 1.0, true).send(), "forced at the step already asked about: the same question again");
    }

    @Test
    void withoutDriftTheNextCandidateWaitsForMaxSteps() {
        CandidatePacer p = new CandidatePacer(DEFAULTS);
        p.refreshed(0, Double.NaN);
        p.sent(0);
        for (long step = 20; step < 200; step += 20) {
            CandidatePacer.Decision d = p.refreshed(step, 0.0005); // a converged layer: eigh skipped, bases kept
            assertFalse(d.send(), "step " + step);
            assertTrue(d.why().contains("drifted"), d.why());
        }
        assertTrue(p.refreshed(200, 0.0005).send(), "max.steps: the weights change even when the bases do not");
        p.sent(200);
        assertFalse(p.refreshed(220, 0.004).send());
        assertFalse(p.refreshed(240, 0.004).send(), "0.008 summed");
        assertTrue(p.refreshed(260, 0.004).send(), "0.012 summed since the last candidate reaches 0.01");
    }

    @Test
    void declinesAndTimeoutsDoubleTheStepGapAndAnswersEaseItBack() {
        CandidatePacer p = new CandidatePacer(DEFAULTS);
        p.refreshed(0, Double.NaN);
        p.sent(0);
        p.declinedOrTimedOut();
        assertEquals(40, p.requiredSteps());
        assertFalse(p.refreshed(39, 1).send());
        assertTrue(p.refreshed(39, 1).why().contains("backed off x2"));
        assertTrue(p.refreshed(40, 1).send());
        p.sent(40);
        for (int i = 0; i < 10; i++) {
            p.declinedOrTimedOut();
        }
        assertEquals(CandidatePacer.MAX_BACKOFF, p.backoff(), "bounded");
        assertEquals(20L << CandidatePacer.MAX_BACKOFF, p.requiredSteps());
        p.answered();
        assertEquals(20L << (CandidatePacer.MAX_BACKOFF - 1), p.requiredSteps(), "one answer halves it");
        for (int i = 0; i < 10; i++) {
            p.answered();
        }
        assertEquals(20, p.requiredSteps(), "never below calibration.min.steps");
    }

    @Test
    void noPacingSendsWithEveryRefreshAndBadSettingsAreRefused() {
        CandidatePacer p = new CandidatePacer(CandidatePacer.Settings.NONE);
        for (long step = 0; step < 5; step++) {
            assertTrue(p.refreshed(step, 0).send());
            p.sent(step);
        }
        assertThrows(IllegalArgumentException.class, () -> new CandidatePacer.Settings(20, 10, 0.01));
        assertThrows(IllegalArgumentException.class, () -> new CandidatePacer.Settings(-1, 10, 0.01));
        assertThrows(IllegalArgumentException.class, () -> new CandidatePacer.Settings(1, 10, Double.NaN));
    }
}
