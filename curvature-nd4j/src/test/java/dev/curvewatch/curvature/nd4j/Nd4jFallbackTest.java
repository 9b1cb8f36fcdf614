package dev.curvewatch.curvature.nd4j;

import dev.curvewatch.curvature.BlasBackends;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * Which backend {@code BlasBackends.best()} picks with ND4J on the class path: OpenBLAS on the CPU
 * build (ND4J-CPU ranks below it), ND4J on a CUDA build with a GPU, and OpenBLAS again on a CUDA
 * build without one: the worker keeps accumulating on the CPU instead of failing.
 */
class Nd4jFallbackTest {

    static boolean cudaBuild() {
        return "cuda".equals(System.getProperty("curvewatch.nd4j.build"));
    }

    @Test
    void bestBackendFollowsWhatNd4jCanRunOn() {
        Nd4jBlasBackend nd4j = new Nd4jBlasBackend();
        String expected;
        if (!cudaBuild()) {
            expected = "openblas";
        } else if (nd4j.isAvailable()) {
            expected = "nd4j-cuda";
        } else {
            expected = "openblas";
            assertNotNull(Nd4jBlasBackend.unavailableReason(), "an unavailable backend says why");
            System.out.println("CUDA build, no usable GPU (" + Nd4jBlasBackend.unavailableReason() + "): falling back to "
                    + BlasBackends.best().name());
        }
        assertEquals(expected, BlasBackends.best().name());

        // and the accumulator works on whatever was picked
        FactorAccumulator acc = FactorAccumulator.cumulative(3, Precision.FLOAT32);
        acc.add(0, new float[]{1, 2, 3, 4, 5, 6}, 2);
        double[] mean = acc.mean();
        assertEquals((1 * 1 + 4 * 4) / 2.0, mean[0], 1e-6);
        assertEquals((2 * 3 + 5 * 6) / 2.0, mean[5], 1e-6);
        assertFalse(Double.isNaN(mean[4]));
    }
}
