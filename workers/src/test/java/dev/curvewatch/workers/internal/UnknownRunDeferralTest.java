package dev.curvewatch.workers.internal;

import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.curvewatch.workers.internal.UnknownRunDeferral.Outcome.GRACE_OVER;
import static dev.curvewatch.workers.internal.UnknownRunDeferral.Outcome.PAUSED_AGAIN;
import static dev.curvewatch.workers.internal.UnknownRunDeferral.Outcome.PAUSED_FIRST_TIME;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The unknown-run policy on a clock of our own (milliseconds), grace 3 s, retries every 250 ms at most. */
class UnknownRunDeferralTest {
    private final TopicPartition p0 = new TopicPartition("captures", 0);
    private final TopicPartition p1 = new TopicPartition("captures", 1);
    private final UnknownRunDeferral deferral = new UnknownRunDeferral(3000);

    @Test
    void aCaptureIsRetriedEvery250MsUntilItsGraceIsOverThenGivenUp() {
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p0, 7, 1000));
        assertTrue(deferral.isPaused(p0));
        assertEquals(1, deferral.paused());
        assertEquals(List.of(), deferral.dueForRetry(1249));
        assertEquals(List.of(p0), deferral.dueForRetry(1250));
        assertFalse(deferral.isPaused(p0), "resumed for the retry");

        assertEquals(PAUSED_AGAIN, deferral.unknownRun(p0, 7, 1260));
        assertEquals(List.of(), deferral.dueForRetry(1509));
        assertEquals(List.of(p0), deferral.dueForRetry(1510));

        // the last retry falls on the end of the grace period, not 250 ms after it
        assertEquals(PAUSED_AGAIN, deferral.unknownRun(p0, 7, 3900));
        assertEquals(List.of(), deferral.dueForRetry(3999));
        assertEquals(List.of(p0), deferral.dueForRetry(4000));
        assertEquals(GRACE_OVER, deferral.unknownRun(p0, 7, 4000), "3 s after it was first seen");
        assertFalse(deferral.isPaused(p0));
        assertEquals(0, deferral.paused());
        // the next capture of the partition starts a grace period of its own
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p0, 8, 4001));
    }

    @Test
    void theGraceCountsFromTheFirstSightOfEachCapture() {
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p0, 7, 1000));
        deferral.dueForRetry(1250);
        // the run of offset 7 was registered, offset 7 accepted; offset 9's run is unknown
        deferral.accepted(p0);
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p0, 9, 3500));
        deferral.dueForRetry(3750);
        assertEquals(PAUSED_AGAIN, deferral.unknownRun(p0, 9, 6499), "9's grace started at 3500");
        deferral.dueForRetry(6500);
        assertEquals(GRACE_OVER, deferral.unknownRun(p0, 9, 6500));
        // accepted clears the first sight: the same offset seen again is a first time
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p1, 3, 0));
        deferral.accepted(p1);
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p1, 3, 100));
    }

    @Test
    void partitionsAreDeferredApartAndForgottenWhenGivenUp() {
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p0, 1, 0));
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p1, 5, 100));
        assertEquals(2, deferral.paused());
        assertEquals(List.of(p0), deferral.dueForRetry(250), "p1 waits until 350");
        assertTrue(deferral.isPaused(p1));
        assertTrue(deferral.forget(p1), "was paused: the caller resumes it");
        assertFalse(deferral.forget(p1));
        assertFalse(deferral.forget(p0), "p0 was resumed for its retry already");
        assertEquals(0, deferral.paused());
        // forgotten: its capture's grace starts again if it is seen again (a new owner reads it afresh)
        assertEquals(PAUSED_FIRST_TIME, deferral.unknownRun(p1, 5, 5000));
    }
}
