package dev.curvewatch.curvature;

import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Path;

/** Reference arrays written by {@code golden/make_golden.py} (numpy/scipy, committed). */
public final class Golden {
    private Golden() {
    }

    /** Path of a committed test resource under {@code golden/}. */
    public static Path resource(String name) {
        try {
            return Path.of(Golden.class.getResource("/golden/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    public static double[] doubles(String tensor) {
        try (SafetensorsFile f = SafetensorsFile.open(resource("golden.safetensors"))) {
            return f.readAsDoubles(tensor);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static float[] floats(String tensor) {
        try (SafetensorsFile f = SafetensorsFile.open(resource("golden.safetensors"))) {
            return f.readFloat32(tensor);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static long[] longs(String tensor) {
        try (SafetensorsFile f = SafetensorsFile.open(resource("golden.safetensors"))) {
            java.nio.LongBuffer b = f.data(tensor).asLongBuffer();
            long[] out = new long[b.remaining()];
            b.get(out);
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** max |a - b| / max(max|b|, tiny): error relative to the reference's scale. */
    public static double relativeError(double[] actual, double[] expected) {
        if (actual.length != expected.length) {
            throw new AssertionError("length " + actual.length + " != " + expected.length);
        }
        double scale = 0;
        double err = 0;
        for (int i = 0; i < expected.length; i++) {
            scale = Math.max(scale, Math.abs(expected[i]));
            err = Math.max(err, Math.abs(actual[i] - expected[i]));
        }
        return err / Math.max(scale, Double.MIN_NORMAL);
    }
}
