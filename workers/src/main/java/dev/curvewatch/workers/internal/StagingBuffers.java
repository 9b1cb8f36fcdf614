package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Tensor;
import dev.curvewatch.schemas.TensorCodec;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/**
 * Where a capture's tensors wait for the accumulator: two reusable direct native-order buffers
 * (activations, gradients), grown to the largest capture seen. One bulk memcpy per tensor, after
 * which BLAS reads the floats without another copy and the finiteness scan runs on plain memory
 * instead of a byte-order-converting heap view. Memory: twice the largest capture's tensor bytes
 * (at least 64 KiB each). Used by the poll thread only.
 */
public final class StagingBuffers {
    private static final int MIN_BYTES = 1 << 16;

    private final ByteBuffer[] staging = new ByteBuffer[2];

    /** The activations' floats; valid until the next call. */
    public FloatBuffer activations(Tensor t) {
        return staged(t, 0, "activations");
    }

    /** The gradients' floats; valid until the next call. */
    public FloatBuffer gradients(Tensor t) {
        return staged(t, 1, "gradients");
    }

    /** Bytes held by the two buffers. */
    long capacity() {
        return (staging[0] == null ? 0 : staging[0].capacity()) + (staging[1] == null ? 0 : staging[1].capacity());
    }

    private FloatBuffer staged(Tensor t, int slot, String field) {
        ByteBuffer src = t.getData().duplicate();
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            return TensorCodec.floats(t, field);
        }
        int n = src.remaining();
        ByteBuffer dst = staging[slot];
        if (dst == null || dst.capacity() < n) {
            dst = ByteBuffer.allocateDirect(Math.max(n, MIN_BYTES)).order(ByteOrder.nativeOrder());
            staging[slot] = dst;
        }
        dst.clear();
        dst.put(src);
        dst.flip();
        return dst.asFloatBuffer();
    }
}
