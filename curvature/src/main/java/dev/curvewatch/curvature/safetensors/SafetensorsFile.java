package dev.curvewatch.curvature.safetensors;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Reader for the safetensors format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * (optionally padded with spaces), then the data section. {@link #open(Path)} validates the whole
 * header before any tensor is read: JSON shape, known dtypes, byte ranges that match
 * shape × dtype size and tile the data section exactly (contiguous, no overlap, no gap, in
 * bounds). Tensor bytes are memory-mapped one tensor at a time.
 */
public final class SafetensorsFile implements AutoCloseable {
    /** Same cap as the reference implementation: a larger header is a corrupt or hostile file. */
    static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;
    /** Duplicate names would silently shadow a tensor: reject them. */
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    private final Path path;
    private final FileChannel channel;
    private final long dataStart;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> metadata;

    private SafetensorsFile(Path path, FileChannel channel, long dataStart, Map<String, TensorInfo> tensors,
                            Map<String, String> metadata) {
        this.path = path;
        this.channel = channel;
        this.dataStart = dataStart;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Opens and validates a file; the caller closes it. */
    public static SafetensorsFile open(Path path) throws IOException {
        FileChannel channel = FileChannel.open(path, StandardOpenOption.READ);
        try {
            return read(path, channel);
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
    }

    private static SafetensorsFile read(Path path, FileChannel channel) throws IOException {
        long size = channel.size();
        if (size < 8) {
            throw fail(path, "file has " + size + " bytes, too short for the 8-byte header length");
        }
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        readFully(channel, len, 0);
        long headerLen = len.getLong(0);
        if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || headerLen > size - 8) {
            throw fail(path, "header length " + headerLen + " is impossible for a file of " + size + " bytes");
        }
        ByteBuffer header = ByteBuffer.allocate((int) headerLen);
        readFully(channel, header, 8);
        String json;
        try {
            json = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .decode(header.flip()).toString();
        } catch (CharacterCodingException e) {
            throw fail(path, "header is not valid UTF-8");
        }
        if (!json.startsWith("{")) {
            throw fail(path, "header does not start with '{'");
        }
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JsonProcessingException e) {
            throw fail(path, "header is not valid JSON: " + e.getOriginalMessage());
        }
        if (root == null || !root.isObject()) {
            throw fail(path, "header is not a JSON object");
        }
        long dataLen = size - 8 - headerLen;
        Map<String, String> metadata = new LinkedHashMap<>();
        List<TensorInfo> infos = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().equals("__metadata__")) {
                readMetadata(path, e.getValue(), metadata);
            } else {
                infos.add(readInfo(path, e.getKey(), e.getValue()));
            }
        }
        infos.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        long expected = 0;
        for (TensorInfo t : infos) {
            if (t.begin() != expected) {
                throw fail(path, "tensor '" + t.name() + "' starts at byte " + t.begin() + " but the previous one ends at "
                        + expected + (t.begin() < expected ? " (overlap)" : " (gap)"));
            }
            expected = t.end();
        }
        if (expected != dataLen) {
            throw fail(path, "tensors cover " + expected + " bytes but the data section has " + dataLen
                    + (expected > dataLen ? " (truncated file?)" : " (trailing bytes)"));
        }
        Map<String, TensorInfo> byName = new LinkedHashMap<>();
        for (TensorInfo t : infos) {
            byName.put(t.name(), t);
        }
        return new SafetensorsFile(path, channel, 8 + headerLen, Collections.unmodifiableMap(byName),
                Collections.unmodifiableMap(metadata));
    }

    private static void readMetadata(Path path, JsonNode node, Map<String, String> out) throws SafetensorsFormatException {
        if (!node.isObject()) {
            throw fail(path, "__metadata__ must be an object of strings");
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> m = it.next();
            if (!m.getValue().isTextual()) {
                throw fail(path, "__metadata__ value of '" + m.getKey() + "' is not a string");
            }
            out.put(m.getKey(), m.getValue().asText());
        }
    }

    private static TensorInfo readInfo(Path path, String name, JsonNode node) throws SafetensorsFormatException {
        if (!node.isObject()) {
            throw fail(path, "entry '" + name + "' is not an object");
        }
        JsonNode dtypeNode = node.get("dtype");
        JsonNode shapeNode = node.get("shape");
        JsonNode offsets = node.get("data_offsets");
        if (dtypeNode == null || !dtypeNode.isTextual() || shapeNode == null || !shapeNode.isArray()
                || offsets == null || !offsets.isArray() || offsets.size() != 2) {
            throw fail(path, "tensor '" + name + "' needs a string dtype, a shape array and two data_offsets");
        }
        Dtype dtype;
        try {
            dtype = Dtype.valueOf(dtypeNode.asText());
        } catch (IllegalArgumentException e) {
            throw fail(path, "tensor '" + name + "' has unknown dtype " + dtypeNode.asText());
        }
        long[] shape = new long[shapeNode.size()];
        long count = 1;
        for (int i = 0; i < shape.length; i++) {
            JsonNode d = shapeNode.get(i);
            if (!d.canConvertToLong() || !d.isIntegralNumber() || d.asLong() < 0) {
                throw fail(path, "tensor '" + name + "' has a bad shape entry " + d);
            }
            shape[i] = d.asLong();
            try {
                count = Math.multiplyExact(count, shape[i]);
            } catch (ArithmeticException e) {
                throw fail(path, "tensor '" + name + "' shape overflows");
            }
        }
        for (JsonNode o : offsets) {
            if (!o.isIntegralNumber() || !o.canConvertToLong() || o.asLong() < 0) {
                throw fail(path, "tensor '" + name + "' has a bad data offset " + o);
            }
        }
        long begin = offsets.get(0).asLong();
        long end = offsets.get(1).asLong();
        if (end < begin) {
            throw fail(path, "tensor '" + name + "' ends (" + end + ") before it begins (" + begin + ")");
        }
        if (end - begin != count * dtype.bytes()) {
            throw fail(path, "tensor '" + name + "' spans " + (end - begin) + " bytes but " + dtype + " x "
                    + Arrays.toString(shape) + " needs " + count * dtype.bytes());
        }
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    private static void readFully(FileChannel ch, ByteBuffer dst, long position) throws IOException {
        long pos = position;
        while (dst.hasRemaining()) {
            int n = ch.read(dst, pos);
            if (n < 0) {
                throw new SafetensorsFormatException("unexpected end of file at byte " + pos);
            }
            pos += n;
        }
    }

    private static SafetensorsFormatException fail(Path path, String message) {
        return new SafetensorsFormatException(path + ": " + message);
    }

    public Path path() {
        return path;
    }

    /** The {@code __metadata__} map (empty if absent). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Tensors in data-section order. */
    public List<TensorInfo> tensors() {
        return List.copyOf(tensors.values());
    }

    public Optional<TensorInfo> tensor(String name) {
        return Optional.ofNullable(tensors.get(name));
    }

    /** Raw little-endian bytes of a tensor (read-only, memory-mapped). */
    public ByteBuffer data(String name) throws IOException {
        TensorInfo t = require(name);
        long len = t.end() - t.begin();
        if (len > Integer.MAX_VALUE) {
            throw new SafetensorsFormatException(path + ": tensor '" + name + "' is larger than 2 GiB");
        }
        return channel.map(FileChannel.MapMode.READ_ONLY, dataStart + t.begin(), len).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** A F32 tensor's values. */
    public float[] readFloat32(String name) throws IOException {
        TensorInfo t = require(name);
        if (t.dtype() != Dtype.F32) {
            throw new SafetensorsFormatException(path + ": tensor '" + name + "' is " + t.dtype() + ", expected F32");
        }
        ByteBuffer bytes = data(name);
        float[] out = new float[(int) t.elementCount()];
        bytes.asFloatBuffer().get(out);
        return out;
    }

    /** A floating-point tensor (F64, F32, F16 or BF16) widened to double. */
    public double[] readAsDoubles(String name) throws IOException {
        TensorInfo t = require(name);
        ByteBuffer b = data(name);
        if (t.elementCount() > Integer.MAX_VALUE - 8) {
            throw new SafetensorsFormatException(path + ": tensor '" + name + "' has too many elements for one array");
        }
        int n = (int) t.elementCount();
        double[] out = new double[n];
        switch (t.dtype()) {
            case F64 -> b.asDoubleBuffer().get(out);
            case F32 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = b.getFloat(4 * i);
                }
            }
            case F16 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = halfToFloat(b.getShort(2 * i));
                }
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = Float.intBitsToFloat((b.getShort(2 * i) & 0xffff) << 16);
                }
            }
            default -> throw new SafetensorsFormatException(path + ": tensor '" + name + "' is " + t.dtype()
                    + ", not a floating-point type");
        }
        return out;
    }

    /** IEEE 754 binary16 to float (Float.float16ToFloat needs Java 20). */
    static float halfToFloat(short bits) {
        int sign = (bits & 0x8000) << 16;
        int exp = (bits >>> 10) & 0x1f;
        int mant = bits & 0x3ff;
        if (exp == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        }
        if (exp == 0) {
            float sub = mant * 0x1p-24f;
            return sign == 0 ? sub : -sub;
        }
        return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    private TensorInfo require(String name) throws SafetensorsFormatException {
        TensorInfo t = tensors.get(name);
        if (t == null) {
            throw new SafetensorsFormatException(path + ": no tensor named '" + name + "'");
        }
        return t;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
