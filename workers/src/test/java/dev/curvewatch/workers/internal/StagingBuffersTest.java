package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Tensor;
import dev.curvewatch.schemas.TensorCodec;
import org.junit.jupiter.api.Test;

import java.nio.FloatBuffer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class StagingBuffersTest {
    private static float[] values(int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = scale * (i - n / 2f) + 0.25f;
        }
        return v;
    }

    private static float[] read(FloatBuffer b) {
        float[] out = new float[b.remaining()];
        b.duplicate().get(out);
        return out;
    }

    @Test
    void stagedFloatsEqualTheTensorsAndTheBuffersGrowOnlyForLargerCaptures() {
        StagingBuffers staging = new StagingBuffers();
        float[] a = values(4 * 8, 1.5f);
        float[] g = values(4 * 3, -0.5f);
        Tensor ta = TensorCodec.ofFloats(a, 4, 8);
        FloatBuffer sa = staging.activations(ta);
        FloatBuffer sg = staging.gradients(TensorCodec.ofFloats(g, 4, 3));
        assertTrue(sa.isDirect() && sg.isDirect());
        assertArrayEquals(a, read(sa));
        assertArrayEquals(g, read(sg), "activations and gradients in buffers of their own");
        assertEquals(0, ta.getData().position(), "the tensor's own buffer is left as it was");
        long small = staging.capacity();
        assertEquals(2 << 16, small, "64 KiB each at least");

        float[] big = values(200 * 100, 0.001f); // 80,000 bytes > 64 KiB
        assertArrayEquals(big, read(staging.activations(TensorCodec.ofFloats(big, 200, 100))));
        long grown = staging.capacity();
        assertEquals((1 << 16) + 80_000, grown);
        // a smaller capture after a big one reuses the buffer, and sees only its own floats
        float[] again = values(2 * 8, 3f);
        assertArrayEquals(again, read(staging.activations(TensorCodec.ofFloats(again, 2, 8))));
        assertEquals(grown, staging.capacity());
    }
}
