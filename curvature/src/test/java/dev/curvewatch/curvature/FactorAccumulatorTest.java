package dev.curvewatch.curvature;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Factors against closed forms and the numpy reference (golden/make_golden.py): FLOAT64 storage
 * within 1e-12 relative of the fp64 reference, FLOAT32 storage within 1e-5.
 */
class FactorAccumulatorTest {
    private static final int D = 24;
    private final float[] x = Golden.floats("factor.x");
    private final long[] steps = Golden.longs("factor.steps");
    private final long[] counts = Golden.longs("factor.counts");

    private static double tolerance(Precision p) {
        return p == Precision.FLOAT64 ? 1e-12 : 1e-5;
    }

    private void feed(FactorAccumulator acc, int fromBatch, int toBatch) {
        int offset = 0;
        for (int b = 0; b < toBatch; b++) {
            int n = (int) counts[b];
            if (b >= fromBatch) {
                acc.add(steps[b], Arrays.copyOfRange(x, offset * D, (offset + n) * D), n);
            }
            offset += n;
        }
    }

    @Test
    void singleRowGivesItsOuterProduct() {
        FactorAccumulator acc = FactorAccumulator.cumulative(3, Precision.FLOAT64);
        acc.add(5, new float[] {1, 2, -3}, 1);
        assertArrayEquals(new double[] {1, 2, -3, 2, 4, -6, -3, -6, 9}, acc.mean(), 0);
        assertEquals(1, acc.tokenCount());
        assertEquals(5, acc.stepFirst());
        assertEquals(5, acc.stepLast());
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void cumulativeMatchesNumpyInBatches(Precision p) {
        FactorAccumulator acc = FactorAccumulator.cumulative(D, p);
        feed(acc, 0, counts.length);
        assertTrue(Golden.relativeError(acc.mean(), Golden.doubles("factor.cumulative_mean")) < tolerance(p));
        assertEquals(Arrays.stream(counts).sum(), acc.tokenCount());
        assertEquals(acc.tokenCount(), acc.weight());
        assertEquals(0, acc.stepFirst());
        assertEquals(4, acc.stepLast());
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void emaDecaysSumAndWeightPerStepAdvanced(Precision p) {
        FactorAccumulator acc = FactorAccumulator.ema(D, p, 0.9);
        feed(acc, 0, counts.length);
        assertTrue(Golden.relativeError(acc.mean(), Golden.doubles("factor.ema_mean")) < tolerance(p));
        assertEquals(Golden.doubles("factor.ema_weight")[0], acc.weight(), 1e-12);
        assertEquals(Arrays.stream(counts).sum(), acc.tokenCount(), "raw token count is never decayed");
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void mergeOfTwoWorkersEqualsOneStream(Precision p) {
        FactorAccumulator first = FactorAccumulator.cumulative(D, p);
        FactorAccumulator second = FactorAccumulator.cumulative(D, p);
        feed(first, 0, 2);
        feed(second, 2, counts.length);
        first.merge(second);
        assertTrue(Golden.relativeError(first.mean(), Golden.doubles("factor.cumulative_mean")) < tolerance(p));
        assertEquals(Arrays.stream(counts).sum(), first.tokenCount());
        assertEquals(0, first.stepFirst());
        assertEquals(4, first.stepLast());
    }

    @Test
    void emaMergeDecaysTheOlderPartToTheLaterStep() {
        FactorAccumulator first = FactorAccumulator.ema(D, Precision.FLOAT64, 0.9);
        FactorAccumulator second = FactorAccumulator.ema(D, Precision.FLOAT64, 0.9);
        feed(first, 0, 3);
        feed(second, 3, counts.length);
        first.merge(second);
        assertTrue(Golden.relativeError(first.mean(), Golden.doubles("factor.ema_mean")) < 1e-12);
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void restoreOfSnapshotContinuesBitIdentically(Precision p) {
        FactorAccumulator straight = FactorAccumulator.ema(D, p, 0.9);
        feed(straight, 0, counts.length);
        FactorAccumulator interrupted = FactorAccumulator.ema(D, p, 0.9);
        feed(interrupted, 0, 2);
        FactorState checkpoint = interrupted.snapshot();
        FactorAccumulator resumed = FactorAccumulator.restore(checkpoint);
        feed(resumed, 2, counts.length);
        assertArrayEquals(straight.mean(), resumed.mean(), 0.0);
        assertArrayEquals(interrupted.mean(), checkpoint.mean(), 0.0, "the state's own mean: the same bits without a restore");
        assertEquals(straight.weight(), resumed.weight(), 0.0);
        assertEquals(straight.tokenCount(), resumed.tokenCount());
        assertEquals(straight.stepFirst(), resumed.stepFirst());
        assertEquals(p, checkpoint.precision());
        assertEquals(FactorMode.EMA, checkpoint.mode());
    }

    @Test
    void directHeapAndBigEndianBuffersGiveTheSameFactor() {
        int n = x.length / D;
        FactorAccumulator fromArray = FactorAccumulator.cumulative(D, Precision.FLOAT32);
        fromArray.add(0, x, n);
        ByteBuffer le = ByteBuffer.allocateDirect(x.length * 4).order(ByteOrder.nativeOrder());
        le.asFloatBuffer().put(x);
        ByteBuffer be = ByteBuffer.allocate(x.length * 4 + 8).order(ByteOrder.BIG_ENDIAN);
        be.position(8);
        FloatBuffer beFloats = be.slice().order(ByteOrder.BIG_ENDIAN).asFloatBuffer().put(x).flip();
        for (FloatBuffer input : new FloatBuffer[] {le.asFloatBuffer(), FloatBuffer.wrap(x), beFloats}) {
            FactorAccumulator acc = FactorAccumulator.cumulative(D, Precision.FLOAT32);
            int before = input.position();
            acc.add(0, input, n);
            assertEquals(before, input.position(), "position untouched");
            assertArrayEquals(fromArray.mean(), acc.mean(), 0.0);
        }
    }

    @Test
    void nanIsRejectedWithItsPositionAndStateIsUnchanged() {
        FactorAccumulator acc = FactorAccumulator.cumulative(3, Precision.FLOAT32);
        acc.add(0, new float[] {1, 1, 1}, 1);
        FactorState before = acc.snapshot();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> acc.add(1, new float[] {1, 2, 3, 4, Float.NaN, 6}, 2));
        assertTrue(e.getMessage().contains("row 1, column 1"), e.getMessage());
        assertTrue(e.getMessage().contains("NaN"), e.getMessage());
        IllegalArgumentException inf = assertThrows(IllegalArgumentException.class,
                () -> acc.add(1, FloatBuffer.wrap(new float[] {Float.NEGATIVE_INFINITY, 0, 0}), 1));
        assertTrue(inf.getMessage().contains("row 0, column 0"), inf.getMessage());
        assertArrayEquals(before.sum32(), acc.snapshot().sum32());
        assertEquals(1, acc.tokenCount());
        assertEquals(0, acc.stepLast());
    }

    @Test
    void shapeMismatchAndBadSettingsAreRejected() {
        FactorAccumulator acc = FactorAccumulator.cumulative(3, Precision.FLOAT64);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> acc.add(0, new float[5], 2));
        assertTrue(e.getMessage().contains("expected 2 rows of 3"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> acc.add(-1, new float[3], 1));
        assertThrows(IllegalStateException.class, acc::mean, "no tokens yet");
        assertThrows(IllegalArgumentException.class, () -> FactorAccumulator.ema(3, Precision.FLOAT32, 1.5));
        assertThrows(IllegalArgumentException.class,
                () -> acc.merge(FactorAccumulator.cumulative(3, Precision.FLOAT32)));
        assertThrows(IllegalArgumentException.class,
                () -> acc.merge(FactorAccumulator.cumulative(4, Precision.FLOAT64)));
    }

    @Test
    void aStateOwnsItsSumAndHoldsTheOneOfItsPrecision() {
        double[] sum = {4, 2, 2, 4};
        FactorState s = new FactorState(2, Precision.FLOAT64, FactorMode.CUMULATIVE, 1.0, sum, null, 2, 2, 0, 0);
        sum[0] = -1;
        s.sum64()[1] = -1;
        assertArrayEquals(new double[] {4, 2, 2, 4}, s.sum64(), "copied in and out");
        assertArrayEquals(new double[] {2, 1, 1, 2}, s.mean());
        assertArrayEquals(new double[] {2, 1, 1, 2}, FactorAccumulator.restore(s).mean());
        assertThrows(IllegalStateException.class, s::sum32);
        assertThrows(IllegalArgumentException.class,
                () -> new FactorState(2, Precision.FLOAT32, FactorMode.CUMULATIVE, 1.0, sum, null, 2, 2, 0, 0));
        assertThrows(IllegalArgumentException.class,
                () -> new FactorState(2, Precision.FLOAT64, FactorMode.CUMULATIVE, 1.0, sum, new float[4], 2, 2, 0, 0));
        assertThrows(IllegalArgumentException.class,
                () -> new FactorState(2, Precision.FLOAT64, FactorMode.CUMULATIVE, 1.0, null, null, 2, 2, 0, 0));
        assertThrows(IllegalStateException.class,
                () -> FactorState.ofFloat32(2, FactorMode.CUMULATIVE, 1.0, new float[4], 0, 0, -1, -1).mean(), "no tokens yet");
    }
}
