package dev.curvewatch.service.internal;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JsonTest {
    @Test
    void spectraAreSampledLogSpacedUpTo512Points() {
        assertEquals(10, Json.spectrumIndices(10, 512).length);
        for (int n : new int[]{513, 1000, 4096, 11008}) {
            int[] idx = Json.spectrumIndices(n, 512);
            assertTrue(idx.length <= 512 && idx.length > 400, n + ": " + idx.length + " points");
            assertEquals(0, idx[0]);
            assertEquals(n - 1, idx[idx.length - 1], "the smallest eigenvalue is shown");
            for (int i = 1; i < idx.length; i++) {
                assertTrue(idx[i] > idx[i - 1], "strictly increasing");
            }
            // log spacing: the top decade of indices gets many more points than a linear sample would
            long head = java.util.Arrays.stream(idx).filter(i -> i < n / 10).count();
            if (n >= 8 * 512) {
                assertTrue(head > 0.4 * idx.length, n + ": only " + head + " points in the first tenth");
            } else {
                assertTrue(head >= n / 10 - 1, n + ": the head is dense");
            }
        }
    }
}
