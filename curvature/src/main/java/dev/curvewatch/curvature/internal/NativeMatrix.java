package dev.curvewatch.curvature.internal;

import java.nio.DoubleBuffer;
import org.bytedeco.javacpp.DoublePointer;

/**
 * Off-heap fp64 matrix handed to BLAS by address, freed on {@link #close()}. Heap arrays passed
 * to JNI are copied in and out on every call; staging operands here once keeps a chain of gemms
 * from copying each operand twice per product.
 */
public final class NativeMatrix implements AutoCloseable {
    private final DoublePointer pointer;
    private final DoubleBuffer buffer;

    private NativeMatrix(DoublePointer pointer) {
        this.pointer = pointer;
        this.buffer = pointer.asBuffer();
    }

    /** A native copy of {@code values}. */
    public static NativeMatrix copyOf(double[] values) {
        return new NativeMatrix(new DoublePointer(values));
    }

    /** A native matrix of {@code count} entries, zero-filled. */
    public static NativeMatrix zeros(int count) {
        DoublePointer p = new DoublePointer(count);
        p.zero();
        return new NativeMatrix(p);
    }

    /** Direct buffer over the native memory; invalid after {@link #close()}. */
    public DoubleBuffer buffer() {
        return buffer;
    }

    /** Copies the entries back to the heap. */
    public double[] toArray() {
        double[] out = new double[buffer.capacity()];
        buffer.get(0, out);
        return out;
    }

    @Override
    public void close() {
        pointer.close();
    }
}
