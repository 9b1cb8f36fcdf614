package dev.curvewatch.trainer.testing;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The simulator's scoring helpers against closed forms. */
class TrainerSimulatorScoringTest {
    @Test
    void crossEntropyIsTheNegativeLogSoftmaxOfTheLabel() {
        assertEquals(Math.log(2), TrainerSimulator.crossEntropy(new double[]{0, 0}, 0), 1e-15);
        // softmax([1, 2, 3])[0] = e / (e + e^2 + e^3)
        double e = Math.E;
        assertEquals(-Math.log(e / (e + e * e + e * e * e)), TrainerSimulator.crossEntropy(new double[]{1, 2, 3}, 0), 1e-12);
        // shifted by the largest logit: no overflow at 1000, and -log softmax = 1000 - 0 for the smaller one
        assertEquals(1000.0, TrainerSimulator.crossEntropy(new double[]{1000, 0}, 1), 1e-9);
        assertEquals(0.0, TrainerSimulator.crossEntropy(new double[]{1000, 0}, 0), 1e-12);
    }

    @Test
    void argmaxIsTheFirstLargestLogit() {
        assertEquals(2, TrainerSimulator.argmax(new double[]{0.1, -3, 4, 1}));
        assertEquals(1, TrainerSimulator.argmax(new double[]{0, 5, 5}));
        assertEquals(0, TrainerSimulator.argmax(new double[]{7}));
    }
}
