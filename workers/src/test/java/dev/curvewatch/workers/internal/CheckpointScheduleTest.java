package dev.curvewatch.workers.internal;

import org.junit.jupiter.api.Test;

import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** When partitions are checkpointed, on a clock of our own (nanoseconds from 0). */
class CheckpointScheduleTest {
    private static final long S = 1_000_000_000L;
    /** interval 10 s, max interval 300 s, ratio 1, 1M tokens */
    private final CheckpointSchedule schedule = new CheckpointSchedule(10_000, 300_000, 1.0, 1_000_000);

    /** 11008 x 4096 fp64: (11008² + 4096²) x 8 bytes; a 512-wide layer: 2 x 512² x 8. */
    private static final long BIG = (11008L * 11008 + 4096L * 4096) * 8;
    private static final long SMALL = 2L * 512 * 512 * 8;
    private final Map<Integer, Long> factorBytes = Map.of(0, BIG, 1, SMALL, 2, 0L);

    private Set<Integer> due(long now) {
        return schedule.due(now, p -> factorBytes.getOrDefault(p, 0L));
    }

    @Test
    void aBigLayerWaitsForCaptureBytesWorthItsFactorsWhileASmallOneKeepsTheInterval() {
        long capture = 256L * (11008 + 4096) * 4; // 256 tokens of the big layer: 15.5 MB
        long t = 0;
        int captures = 0;
        long firstBig = -1;
        for (; t <= 200 * S; t += S) { // one capture a second in each partition
            schedule.accumulated(0, capture, 256, t);
            schedule.accumulated(1, 256L * 1024 * 4, 256, t);
            captures++;
            Set<Integer> due = due(t);
            if (due.contains(1)) {
                schedule.committed(Set.of(1), t);
            }
            if (due.contains(0)) {
                firstBig = t;
                break;
            }
        }
        // 1.1 GB of factors / 15.5 MB of captures per second: 72 captures
        assertEquals((long) Math.ceil((double) BIG / capture), captures);
        assertEquals(71 * S, firstBig);
        schedule.committed(Set.of(0), t);
        schedule.accumulated(0, capture, 256, t + S);
        assertEquals(false, due(t + S).contains(0), "just committed");
    }

    @Test
    void theSmallLayerIsDueAtEachIntervalAndNotBefore() {
        schedule.accumulated(1, 5 << 20, 256, 0); // 5 MiB of captures: more than its 4 MiB of factors
        assertEquals(Set.of(), due(5 * S), "before the interval");
        schedule.accumulated(1, 1 << 20, 256, 6 * S);
        assertEquals(Set.of(1), due(10 * S));
    }

    @Test
    void aPausedStreamIsCheckpointedAfterAnIntervalOfQuietWhateverTheRatio() {
        schedule.accumulated(0, 1 << 20, 16, 0);
        assertEquals(Set.of(), due(5 * S));
        schedule.accumulated(0, 1 << 20, 16, 5 * S);
        assertEquals(Set.of(), due(12 * S), "records 7 s ago, ratio far from met");
        assertEquals(Set.of(0), due(15 * S), "quiet for an interval");
    }

    @Test
    void theMaxIntervalBoundsTheWaitAndTokensForceACheckpoint() {
        for (long t = 0; t <= 300 * S; t += S) {
            schedule.accumulated(0, 1000, 1, t);
            if (t < 300 * S) {
                assertEquals(Set.of(), due(t), "at " + t / S + " s");
            }
        }
        assertEquals(Set.of(0), due(300 * S));
        schedule.committed(Set.of(0), 300 * S);
        schedule.accumulated(0, 1000, 1_000_000, 301 * S);
        assertEquals(Set.of(0), due(301 * S), "a million tokens: due at once");
    }

    @Test
    void deadLettersRideWithEveryCommitAndAreDueAfterTheInterval() {
        schedule.accumulated(1, 8 << 20, 256, 0);
        schedule.deadLetter(2, 5 * S);
        assertEquals(Set.of(), due(6 * S));
        assertEquals(Set.of(1, 2), due(10 * S), "partition 2's dead letter (5 s old) goes with partition 1's commit");
        schedule.committed(Set.of(1, 2), 10 * S);
        schedule.deadLetter(2, 11 * S);
        assertEquals(Set.of(), due(19 * S));
        assertEquals(Set.of(2), due(20 * S), "alone, after the interval");
    }

    @Test
    void ratioZeroIsTheOldRuleAndForgottenPartitionsAreNotDue() {
        CheckpointSchedule old = new CheckpointSchedule(10_000, 300_000, 0.0, 1_000_000);
        for (long t = 0; t < 10 * S; t += S) {
            old.accumulated(0, 1000, 1, t);
        }
        assertEquals(Set.of(0), old.due(10 * S, p -> BIG));
        old.forget(0);
        assertEquals(Set.of(), old.due(20 * S, p -> BIG));
        assertEquals(Set.of(), old.advanced());
    }
}
