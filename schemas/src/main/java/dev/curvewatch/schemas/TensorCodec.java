package dev.curvewatch.schemas;

import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.Tensor;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Converts between Java arrays and {@link Tensor} records (row-major, little-endian), and checks
 * that a tensor's bytes match its shape. Readers get zero-copy buffer views where possible.
 */
public final class TensorCodec {
    private TensorCodec() {
    }

    public static int elementSize(DType dtype) {
        return switch (dtype) {
            case FLOAT32, INT32 -> 4;
            case FLOAT64, INT64 -> 8;
            case FLOAT16, BFLOAT16 -> 2;
        };
    }

    public static Tensor ofFloats(float[] values, int... shape) {
        checkCount(values.length, shape);
        ByteBuffer bytes = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        bytes.asFloatBuffer().put(values);
        return tensor(DType.FLOAT32, bytes, shape);
    }

    public static Tensor ofDoubles(double[] values, int... shape) {
        checkCount(values.length, shape);
        ByteBuffer bytes = ByteBuffer.allocate(values.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        bytes.asDoubleBuffer().put(values);
        return tensor(DType.FLOAT64, bytes, shape);
    }

    /** Wraps already little-endian encoded bytes (no copy). */
    public static Tensor ofBytes(DType dtype, ByteBuffer littleEndianBytes, int... shape) {
        Tensor t = tensor(dtype, littleEndianBytes, shape);
        requireConsistent(t, "tensor");
        return t;
    }

    private static Tensor tensor(DType dtype, ByteBuffer bytes, int[] shape) {
        List<Integer> dims = new ArrayList<>(shape.length);
        for (int d : shape) {
            dims.add(d);
        }
        bytes.rewind();
        return Tensor.newBuilder().setDtype(dtype).setShape(dims).setData(bytes).build();
    }

    /** Number of elements the shape implies; throws on negative or overflowing dimensions. */
    public static long elementCount(Tensor t, String field) {
        long count = 1;
        for (int d : t.getShape()) {
            if (d < 0) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " has negative dimension " + d);
            }
            count = Math.multiplyExact(count, (long) d);
        }
        return count;
    }

    /** Throws {@link InvalidRecordException} (TENSOR_LENGTH) unless bytes = elements x element size. */
    public static void requireConsistent(Tensor t, String field) {
        long expected = elementCount(t, field) * elementSize(t.getDtype());
        int actual = t.getData().remaining();
        if (expected != actual) {
            throw new InvalidRecordException(RejectReason.TENSOR_LENGTH, String.format(
                    "%s has shape %s %s = %d bytes, but carries %d bytes", field, t.getShape(), t.getDtype(), expected, actual));
        }
    }

    /** Little-endian float view of a FLOAT32 tensor, after the length check. */
    public static FloatBuffer floats(Tensor t, String field) {
        requireDtype(t, DType.FLOAT32, field);
        requireConsistent(t, field);
        return t.getData().duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
    }

    public static DoubleBuffer doubles(Tensor t, String field) {
        requireDtype(t, DType.FLOAT64, field);
        requireConsistent(t, field);
        return t.getData().duplicate().order(ByteOrder.LITTLE_ENDIAN).asDoubleBuffer();
    }

    public static float[] toFloatArray(Tensor t, String field) {
        if (t.getDtype() == DType.FLOAT64) {
            DoubleBuffer d = doubles(t, field);
            float[] out = new float[d.remaining()];
            for (int i = 0; i < out.length; i++) {
                out[i] = (float) d.get(i);
            }
            return out;
        }
        FloatBuffer f = floats(t, field);
        float[] out = new float[f.remaining()];
        f.get(out);
        return out;
    }

    public static double[] toDoubleArray(Tensor t, String field) {
        if (t.getDtype() == DType.FLOAT32) {
            FloatBuffer f = floats(t, field);
            double[] out = new double[f.remaining()];
            for (int i = 0; i < out.length; i++) {
                out[i] = f.get(i);
            }
            return out;
        }
        DoubleBuffer d = doubles(t, field);
        double[] out = new double[d.remaining()];
        d.get(out);
        return out;
    }

    /** Throws NON_FINITE naming the first NaN/Inf element (row and column for 2-D tensors). */
    public static void requireFinite(Tensor t, String field) {
        int cols = t.getShape().size() == 2 ? t.getShape().get(1) : 0;
        if (t.getDtype() == DType.FLOAT32) {
            FloatBuffer f = floats(t, field);
            for (int i = 0, n = f.remaining(); i < n; i++) {
                float v = f.get(i);
                if (!Float.isFinite(v)) {
                    throw nonFinite(field, i, cols, v);
                }
            }
        } else if (t.getDtype() == DType.FLOAT64) {
            DoubleBuffer d = doubles(t, field);
            for (int i = 0, n = d.remaining(); i < n; i++) {
                double v = d.get(i);
                if (!Double.isFinite(v)) {
                    throw nonFinite(field, i, cols, v);
                }
            }
        }
    }

    private static InvalidRecordException nonFinite(String field, int index, int cols, double v) {
        String where = cols > 0 ? "row " + index / cols + ", column " + index % cols : "element " + index;
        return new InvalidRecordException(RejectReason.NON_FINITE, field + " has " + v + " at " + where);
    }

    private static void requireDtype(Tensor t, DType dtype, String field) {
        if (t.getDtype() != dtype) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " is " + t.getDtype() + ", expected " + dtype);
        }
    }

    private static void checkCount(int length, int[] shape) {
        long count = 1;
        for (int d : shape) {
            count *= d;
        }
        if (count != length) {
            throw new IllegalArgumentException(length + " values do not fill shape " + java.util.Arrays.toString(shape));
        }
    }
}
