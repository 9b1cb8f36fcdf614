package dev.curvewatch.curvature;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** First-order scores against the numpy einsum reference (1e-9 relative). */
class EditSensitivityTest {

    @Test
    void matchesNumpyPerExampleScores() {
        ExampleScores s = new EditSensitivity().firstOrder(Golden.doubles("edit.w"), Golden.doubles("edit.w_edited"),
                30, 24, Golden.floats("score.a"), Golden.floats("score.g"), Golden.longs("score.ids"));
        assertArrayEquals(Golden.longs("score.unique_ids"), s.sampleIds());
        double err = Golden.relativeError(s.scores(), Golden.doubles("score.values"));
        assertTrue(err < 1e-9, "relative error " + err);
    }

    @Test
    void closedFormSingleToken() {
        // W' - W = [[1, 0], [0, 2]]; a = (3, 4), g = (1, 1): gᵀ ΔW a = 3 + 8
        ExampleScores s = new EditSensitivity().firstOrder(new double[] {0, 0, 0, 0}, new double[] {1, 0, 0, 2}, 2, 2,
                new float[] {3, 4}, new float[] {1, 1}, new long[] {42});
        assertEquals(11, s.scoreOf(42), 1e-12);
        assertEquals(Double.NaN, s.scoreOf(7));
    }

    @Test
    void topOrdersByScore() {
        ExampleScores s = new ExampleScores(new long[] {1, 2, 3}, new double[] {0.5, 2.0, -1});
        assertArrayEquals(new long[] {2, 1}, s.top(2).sampleIds());
    }

    @Test
    void rejectsShapeMismatchAndNaN() {
        EditSensitivity e = new EditSensitivity();
        assertThrows(IllegalArgumentException.class, () -> e.firstOrder(new double[4], new double[4], 2, 2,
                new float[3], new float[2], new long[] {1}));
        IllegalArgumentException nan = assertThrows(IllegalArgumentException.class, () -> e.firstOrder(new double[4],
                new double[4], 2, 2, new float[] {0, Float.NaN}, new float[2], new long[] {1}));
        assertTrue(nan.getMessage().contains("column 1"), nan.getMessage());
    }
}
