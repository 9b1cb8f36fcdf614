package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.CapturePublisher;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Noise injected mid-run (offline): the labels trained on switch at exactly the configured epoch. */
class MemorizationInjectionTest {

    private static WatchedTraining.Config small(int epochs, int injectAt) {
        return new WatchedTraining.Config("inject", 3, 0.1, 16, epochs, 100, 1e-3f, 0, 0, false, 0, null,
                CapturePublisher.Policy.BLOCK, 1 << 20, null, null, null).withNoiseInjectedAt(injectAt);
    }

    @Test
    void labelsSwitchFromTrueToFlippedExactlyAtTheEpoch() throws Exception {
        WatchedTraining.Config c = small(3, 1);
        NoisyLabelData data = WatchedTraining.data(c);
        List<Boolean> allTrue = new ArrayList<>();
        List<Boolean> allFlipped = new ArrayList<>();
        List<WatchedTraining.EpochProgress> epochs = new ArrayList<>();
        Map<String, Object> r = new WatchedTraining(c, System.out, epochs::add).observe(new WatchedTraining.Observer() {
            @Override
            public void stepTrained(long step, int epoch, int[] idx, int[] labels) {
                assertEquals(step / 20, epoch, "20 steps per epoch");
                boolean t = true;
                boolean f = true;
                for (int i : idx) {
                    t &= labels[i] == data.train().y()[i];
                    f &= labels[i] == data.trainLabels()[i];
                }
                allTrue.add(t);
                allFlipped.add(f);
            }
        }).run();
        assertEquals(60, allTrue.size());
        for (int s = 0; s < 60; s++) {
            if (s < 20) {
                assertTrue(allTrue.get(s), "step " + s + " trains on the true labels");
            } else {
                assertTrue(allFlipped.get(s), "step " + s + " trains on the flipped labels");
                // every batch of 100 holds some of the ~10% flipped examples, so the switch is visible at once
                assertTrue(!allTrue.get(s), "step " + s + " uses at least one flipped label");
            }
        }
        assertEquals(20L, r.get("noise_injected_at_step"));
        assertEquals(1, r.get("noise_injected_at_epoch"));
        assertEquals(List.of(false, true, true), epochs.stream().map(WatchedTraining.EpochProgress::flippedLabels).toList());
    }

    @Test
    void injectionAtZeroIsThePlainNoisyRunAndBeyondTheLastEpochACleanOne() throws Exception {
        NoisyLabelData data = WatchedTraining.data(small(1, 0));
        assertArrayEquals(data.trainLabels(), data.labelsForEpoch(0, 0));
        assertArrayEquals(data.train().y(), data.labelsForEpoch(4, 5));
        assertArrayEquals(data.trainLabels(), data.labelsForEpoch(5, 5));
        assertArrayEquals(data.train().y(), data.labelsForEpoch(1_000_000, NoisyLabelData.NEVER));
        Map<String, Object> clean = new WatchedTraining(small(1, 2), System.out).run();
        assertNull(clean.get("noise_injected_at_step"), "injection after the last epoch never happens");
        Map<String, Object> noisy = new WatchedTraining(small(1, 0), System.out).run();
        assertEquals(0L, noisy.get("noise_injected_at_step"));
    }

    @Test
    void presetsForTheDemo() {
        WatchedTraining.Config plain = WatchedTraining.noisyLabelsRun("demo", "127.0.0.1:9092", 30);
        assertEquals(512, plain.hidden());
        assertEquals(0, plain.injectNoiseAtEpoch());
        assertTrue(plain.answerCandidates());
        assertNull(plain.snapshotDir());
        WatchedTraining.Config m = WatchedTraining.memorizationRun("demo", "127.0.0.1:9092", 30, 10);
        assertEquals(10, m.injectNoiseAtEpoch());
        assertEquals(plain, m.withNoiseInjectedAt(0), "otherwise the same run");
        assertThrows(IllegalArgumentException.class, () -> WatchedTraining.memorizationRun("demo", null, 30, 0));
        assertThrows(IllegalArgumentException.class, () -> plain.followingSnapshots(null, true));
        assertEquals(20, plain.stepsPerEpoch());
    }

    @Test
    void stopEndsTheRunAfterTheStepInProgress() throws Exception {
        WatchedTraining t = new WatchedTraining(small(1000, 0), System.out);
        t.observe(new WatchedTraining.Observer() {
            @Override
            public void stepTrained(long step, int epoch, int[] idx, int[] labels) {
                if (step == 5) {
                    t.stop();
                }
            }
        });
        Map<String, Object> r = t.run();
        assertEquals(6L, r.get("steps"));
        assertEquals(true, r.get("stopped_early"));
    }

    @Test
    void aHoldBeforeAnEpochPausesTrainingThereAndStopEndsIt() throws Exception {
        WatchedTraining t = new WatchedTraining(small(4, 2), System.out);
        java.util.List<Integer> asked = new java.util.ArrayList<>();
        java.util.List<Long> stepsSeen = new java.util.ArrayList<>();
        t.observe(new WatchedTraining.Observer() {
            @Override
            public void stepTrained(long step, int epoch, int[] idx, int[] labels) {
                stepsSeen.add(step);
            }

            @Override
            public boolean holdBeforeEpoch(int epoch) {
                asked.add(epoch);
                // hold epoch 2 for five asks: no step may be trained meanwhile
                return epoch == 2 && asked.stream().filter(e -> e == 2).count() <= 5;
            }
        });
        Map<String, Object> r = t.run();
        assertEquals(80L, r.get("steps"), "4 epochs of 20 steps, all trained after the hold");
        assertEquals(java.util.List.of(1, 2, 2, 2, 2, 2, 2, 3, 4), asked,
                "never before the first step; asked again while held; and once at the end (epoch = epochs: the end hold)");
        assertEquals(80, stepsSeen.size());

        WatchedTraining held = new WatchedTraining(small(4, 2), System.out);
        held.observe(new WatchedTraining.Observer() {
            @Override
            public boolean holdBeforeEpoch(int epoch) {
                if (epoch == 1) {
                    held.stop(); // e.g. Ctrl-C while the demo waits
                }
                return epoch == 1;
            }
        });
        Map<String, Object> h = held.run();
        assertEquals(true, h.get("stopped_early"));
        assertEquals(20L, h.get("steps"), "nothing trained after a hold that was stopped");
    }
}
