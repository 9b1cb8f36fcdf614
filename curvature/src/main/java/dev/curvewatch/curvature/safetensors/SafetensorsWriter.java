package dev.curvewatch.curvature.safetensors;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a safetensors file: tensors in the order added, contiguous from offset 0; the header
 * JSON carries {@code __metadata__} (strings only) first and is padded with spaces so the data
 * section starts on an 8-byte boundary, as the format spec recommends.
 */
public final class SafetensorsWriter {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Map<String, String> metadata = new LinkedHashMap<>();
    private final List<Entry> entries = new ArrayList<>();

    private record Entry(String name, Dtype dtype, long[] shape, ByteBuffer data) {
    }

    /** Adds metadata entries. */
    public SafetensorsWriter metadata(Map<String, String> values) {
        metadata.putAll(values);
        return this;
    }

    /** Adds a tensor whose little-endian bytes are the buffer's remaining bytes. */
    public SafetensorsWriter add(String name, Dtype dtype, long[] shape, ByteBuffer littleEndianBytes) {
        if (name.equals("__metadata__") || entries.stream().anyMatch(e -> e.name.equals(name))) {
            throw new IllegalArgumentException("tensor name '" + name + "' is reserved or already used");
        }
        long count = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in shape of '" + name + "'");
            }
            count = Math.multiplyExact(count, d);
        }
        if (count * dtype.bytes() != littleEndianBytes.remaining()) {
            throw new IllegalArgumentException("tensor '" + name + "' has " + littleEndianBytes.remaining()
                    + " bytes, shape and dtype need " + count * dtype.bytes());
        }
        entries.add(new Entry(name, dtype, shape.clone(), littleEndianBytes.slice()));
        return this;
    }

    public SafetensorsWriter addFloat32(String name, long[] shape, float[] values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(values);
        return add(name, Dtype.F32, shape, b);
    }

    public SafetensorsWriter addFloat64(String name, long[] shape, double[] values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        b.asDoubleBuffer().put(values);
        return add(name, Dtype.F64, shape, b);
    }

    /** Writes (or replaces) the file at {@code path}. */
    public void write(Path path) throws IOException {
        try (OutputStream out = new BufferedOutputStream(Files.newOutputStream(path), 1 << 20)) {
            write(out);
        }
    }

    public void write(OutputStream out) throws IOException {
        Map<String, Object> header = new LinkedHashMap<>();
        if (!metadata.isEmpty()) {
            header.put("__metadata__", metadata);
        }
        long offset = 0;
        for (Entry e : entries) {
            long end = offset + e.data.remaining();
            Map<String, Object> info = new LinkedHashMap<>();
            info.put("dtype", e.dtype.name());
            info.put("shape", e.shape);
            info.put("data_offsets", new long[] {offset, end});
            header.put(e.name, info);
            offset = end;
        }
        byte[] json = JSON.writeValueAsBytes(header);
        int padded = (json.length + 7) / 8 * 8;
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(json);
        while (head.hasRemaining()) {
            head.put((byte) ' ');
        }
        out.write(head.array());
        byte[] chunk = new byte[1 << 16];
        for (Entry e : entries) {
            ByteBuffer d = e.data.duplicate();
            while (d.hasRemaining()) {
                int n = Math.min(chunk.length, d.remaining());
                d.get(chunk, 0, n);
                out.write(chunk, 0, n);
            }
        }
    }
}
