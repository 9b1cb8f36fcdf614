package dev.curvewatch.curvature.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.curvewatch.curvature.Golden;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsFileTest {
    @TempDir
    Path dir;

    @Test
    void readsTheFileWrittenInPythonFromTorchTensors() throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(Golden.resource("safetensors_sample.safetensors"))) {
            assertEquals(Map.of("format", "pt", "who", "torch"), f.metadata());
            assertArrayEquals(new float[] {0, 0.25f, 0.5f, 0.75f, 1, 1.25f}, f.readFloat32("f32"));
            assertArrayEquals(new long[] {2, 3}, f.tensor("f32").orElseThrow().shape());
            assertArrayEquals(new double[] {1e-300, -2.0, 3.5, 1e300}, f.readAsDoubles("f64"));
            assertArrayEquals(new double[] {0.5, -1.0, 65504.0, Math.scalb(1.0, -24)}, f.readAsDoubles("f16"));
            assertArrayEquals(new double[] {1.0, -2.5, 3.140625}, f.readAsDoubles("bf16"));
            assertEquals(3, f.data("i64").asLongBuffer().get(2));
            assertEquals(0, f.tensor("scalar").orElseThrow().rank());
            assertArrayEquals(new double[] {7.25}, f.readAsDoubles("scalar"));
            assertEquals(0, f.readFloat32("empty").length);
            assertThrows(SafetensorsFormatException.class, () -> f.readFloat32("f64"));
            assertThrows(SafetensorsFormatException.class, () -> f.readAsDoubles("i64"));
            assertThrows(SafetensorsFormatException.class, () -> f.data("nope"));
        }
    }

    @Test
    void roundTripsEveryTensorAndPadsTheHeaderToEightBytes() throws IOException {
        Path out = dir.resolve("copy.safetensors");
        try (SafetensorsFile in = SafetensorsFile.open(Golden.resource("safetensors_sample.safetensors"))) {
            SafetensorsWriter w = new SafetensorsWriter().metadata(in.metadata());
            for (TensorInfo t : in.tensors()) {
                w.add(t.name(), t.dtype(), t.shape(), in.data(t.name()));
            }
            w.write(out);
            try (SafetensorsFile back = SafetensorsFile.open(out)) {
                assertEquals(in.metadata(), back.metadata());
                assertEquals(in.tensors(), back.tensors());
                for (TensorInfo t : in.tensors()) {
                    assertEquals(in.data(t.name()), back.data(t.name()), t.name());
                }
            }
        }
        ByteBuffer head = ByteBuffer.wrap(Files.readAllBytes(out)).order(ByteOrder.LITTLE_ENDIAN);
        long n = head.getLong(0);
        assertEquals(0, (8 + n) % 8);
        assertEquals('{', head.get(8));
    }

    @Test
    void pythonReadsWhatJavaWrites() throws Exception {
        Path python = Path.of("/usr/bin/python3");
        Assumptions.assumeTrue(Files.isExecutable(python), "needs /usr/bin/python3");
        Path out = dir.resolve("java.safetensors");
        new SafetensorsWriter().metadata(Map.of("k", "v"))
                .addFloat32("a", new long[] {2, 2}, new float[] {1, 2, 3, 4})
                .addFloat64("b", new long[] {3}, new double[] {0.5, -0.25, 1e-300})
                .write(out);
        String script = String.join("\n",
                "import json, struct, sys, numpy as np",
                "raw = open(sys.argv[1], 'rb').read()",
                "n = struct.unpack('<Q', raw[:8])[0]",
                "h = json.loads(raw[8:8 + n])",
                "d = raw[8 + n:]",
                "a = np.frombuffer(d[slice(*h['a']['data_offsets'])], '<f4').reshape(h['a']['shape'])",
                "b = np.frombuffer(d[slice(*h['b']['data_offsets'])], '<f8')",
                "assert h['__metadata__'] == {'k': 'v'}",
                "assert (a == np.array([[1, 2], [3, 4]])).all() and (b == [0.5, -0.25, 1e-300]).all()",
                "assert (8 + n) % 8 == 0 and len(d) == h['b']['data_offsets'][1]",
                "print('ok')");
        Process p = new ProcessBuilder(python.toString(), "-c", script, out.toString()).redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), output);
        assertTrue(output.contains("ok"), output);
    }

    private Path file(String header, int dataBytes) throws IOException {
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + json.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(json.length).put(json);
        Path p = Files.createTempFile(dir, "bad", ".safetensors");
        Files.write(p, b.array());
        return p;
    }

    private void assertRejected(Path p, String expectedFragment) {
        SafetensorsFormatException e = assertThrows(SafetensorsFormatException.class, () -> SafetensorsFile.open(p).close());
        assertTrue(e.getMessage().contains(expectedFragment), e.getMessage());
        assertTrue(e.getMessage().contains(p.toString()), "names the file: " + e.getMessage());
    }

    @Test
    void rejectsMalformedFilesWithClearMessages() throws IOException {
        String ok = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        SafetensorsFile.open(file(ok, 8)).close();
        assertRejected(file(ok, 4), "truncated");
        assertRejected(file(ok, 12), "trailing");
        assertRejected(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "needs 12");
        assertRejected(file("{\"x\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "unknown dtype");
        assertRejected(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}", 10), "overlap");
        assertRejected(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "gap");
        assertRejected(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8), "before it begins");
        assertRejected(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8), "bad shape");
        assertRejected(file("{\"__metadata__\":{\"a\":1}}", 0), "not a string");
        assertRejected(file("[1, 2]", 0), "does not start with '{'");
        assertRejected(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "Duplicate field");
        assertRejected(file("{\"x\": ", 0), "not valid JSON");
        Path shortFile = Files.write(dir.resolve("short"), new byte[] {1, 2, 3});
        assertRejected(shortFile, "too short");
        ByteBuffer huge = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1L << 40);
        assertRejected(Files.write(dir.resolve("huge"), huge.array()), "header length");
    }

    @Test
    void writerRejectsInconsistentTensors() {
        SafetensorsWriter w = new SafetensorsWriter().addFloat32("a", new long[] {1}, new float[] {1});
        assertThrows(IllegalArgumentException.class, () -> w.addFloat32("a", new long[] {1}, new float[] {1}));
        assertThrows(IllegalArgumentException.class, () -> w.addFloat32("b", new long[] {3}, new float[] {1}));
        assertThrows(IllegalArgumentException.class, () -> w.addFloat32("__metadata__", new long[] {1}, new float[] {1}));
    }

    @Test
    void halfFloatDecodingCoversSpecialValues() {
        assertEquals(Float.POSITIVE_INFINITY, SafetensorsFile.halfToFloat((short) 0x7c00));
        assertTrue(Float.isNaN(SafetensorsFile.halfToFloat((short) 0x7e00)));
        assertEquals(-0.0f, SafetensorsFile.halfToFloat((short) 0x8000));
        assertEquals(-2.0f, SafetensorsFile.halfToFloat((short) 0xc000));
    }
}
