package dev.curvewatch.contracts;

import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.FactorChunk;
import dev.curvewatch.avro.FactorKind;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.FactorMode;
import dev.curvewatch.curvature.FactorState;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.TensorCodec;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import java.util.function.BiConsumer;

/**
 * The checkpoint format of FactorChunk.avsc / FactorManifest.avsc: each factor's running sum as
 * row-major chunks keyed {@code run/layer/A|G/index}, then the manifest keyed
 * {@code run/layer/manifest} with a SHA-256 over the chunk data bytes (A chunks, then G, in index
 * order). Chunks are stored in the accumulator's precision, so a restore is bit-identical.
 */
public final class CheckpointCodec {
    public static final String MANIFEST_SUFFIX = "/manifest";

    private final AvroSerializer<FactorChunk> chunkSerializer = new AvroSerializer<>(FactorChunk.class);
    private final AvroSerializer<FactorManifest> manifestSerializer = new AvroSerializer<>(FactorManifest.class);
    private final AvroDeserializer<FactorChunk> chunkDecoder = new AvroDeserializer<>(FactorChunk.class);
    private final AvroDeserializer<FactorManifest> manifestDecoder = new AvroDeserializer<>(FactorManifest.class);
    private final int chunkBytes;

    public CheckpointCodec(int chunkBytes) {
        this.chunkBytes = chunkBytes;
    }

    public static String chunkKey(String runLayer, FactorKind kind, int index) {
        return runLayer + "/" + kind + "/" + index;
    }

    public static String manifestKey(String runLayer) {
        return runLayer + MANIFEST_SUFFIX;
    }

    /** Provenance of a checkpoint besides the accumulators themselves. */
    public record Provenance(String runId, String layer, long version, long captures, String producer, String codeVersion) {
    }

    /**
     * Encodes one layer's checkpoint and hands each (key, value) to {@code sink}, chunks first and
     * the manifest last. Holds one copy of a factor's sum at a time plus one chunk.
     *
     * @return total chunk data bytes written
     */
    public long write(Provenance p, FactorAccumulator a, FactorAccumulator g, BiConsumer<String, byte[]> sink) {
        String runLayer = p.runId() + "/" + p.layer();
        MessageDigest sha = sha256();
        DType dtype = a.precision() == Precision.FLOAT32 ? DType.FLOAT32 : DType.FLOAT64;
        int[] counts = new int[2];
        long bytes = 0;
        FactorAccumulator[] accs = {a, g};
        FactorKind[] kinds = {FactorKind.A, FactorKind.G};
        for (int f = 0; f < 2; f++) {
            double[] sum = accs[f].sum();
            int dim = accs[f].dim();
            int elemSize = a.precision().bytes();
            int perChunk = Math.max(1, chunkBytes / elemSize);
            int count = (int) ((sum.length + (long) perChunk - 1) / perChunk);
            counts[f] = count;
            for (int i = 0; i < count; i++) {
                int from = i * perChunk;
                int n = Math.min(perChunk, sum.length - from);
                ByteBuffer data = ByteBuffer.allocate(n * elemSize).order(ByteOrder.LITTLE_ENDIAN);
                if (dtype == DType.FLOAT32) {
                    for (int k = 0; k < n; k++) {
                        data.putFloat((float) sum[from + k]);
                    }
                } else {
                    for (int k = 0; k < n; k++) {
                        data.putDouble(sum[from + k]);
                    }
                }
                data.flip();
                sha.update(data.duplicate());
                bytes += n * (long) elemSize;
                FactorChunk chunk = FactorChunk.newBuilder()
                        .setRunId(p.runId()).setLayer(p.layer()).setFactor(kinds[f]).setVersion(p.version())
                        .setIndex(i).setCount(count).setOffset(from).setDim(dim)
                        .setData(TensorCodec.ofBytes(dtype, data, n))
                        .build();
                sink.accept(chunkKey(runLayer, kinds[f], i), chunkSerializer.serialize(null, chunk));
            }
        }
        FactorManifest m = FactorManifest.newBuilder()
                .setRunId(p.runId()).setLayer(p.layer()).setVersion(p.version())
                .setDIn(a.dim()).setDOut(g.dim()).setDtype(dtype)
                .setMode(a.mode() == FactorMode.EMA ? dev.curvewatch.avro.FactorMode.EMA : dev.curvewatch.avro.FactorMode.CUMULATIVE)
                .setEmaDecay(a.decay())
                .setTokenCount(a.tokenCount()).setWeight(a.weight())
                .setStepFirst(a.stepFirst()).setStepLast(a.stepLast())
                .setCaptures(p.captures())
                .setChunksA(counts[0]).setChunksG(counts[1])
                .setSha256(HexFormat.of().formatHex(sha.digest()))
                .setCreatedMs(System.currentTimeMillis())
                .setProducer(p.producer()).setCodeVersion(p.codeVersion())
                .build();
        sink.accept(manifestKey(runLayer), manifestSerializer.serialize(null, m));
        return bytes;
    }

    public boolean isManifestKey(String key) {
        return key.endsWith(MANIFEST_SUFFIX);
    }

    public FactorManifest decodeManifest(byte[] value) {
        return manifestDecoder.decode(value);
    }

    public FactorChunk decodeChunk(byte[] value) {
        return chunkDecoder.decode(value);
    }

    /**
     * Rebuilds a checkpoint from its manifest and the newest chunk seen under each chunk key;
     * every chunk must carry the manifest's version. Nothing is allocated from the manifest's
     * sizes alone: the sides and chunk counts are bounded first, and the factor arrays only once
     * the chunks held are known to add up to exactly d x d elements each. Uses no state of the
     * codec, so it may run on any thread (the service assembles on its refresh threads).
     *
     * @throws CheckpointCorruptException for anything that does not match: sizes, chunks,
     *         checksum, or a decay, weight or count the factor state refuses
     */
    public FactorCheckpoint assemble(FactorManifest m, Map<String, FactorChunk> chunksByKey) {
        String runLayer = m.getRunId() + "/" + m.getLayer();
        String what = runLayer + " version " + m.getVersion();
        checkSide(what, "d_in", m.getDIn(), m.getChunksA());
        checkSide(what, "d_out", m.getDOut(), m.getChunksG());
        checkChunks(m, runLayer, FactorKind.A, m.getDIn(), m.getChunksA(), chunksByKey);
        checkChunks(m, runLayer, FactorKind.G, m.getDOut(), m.getChunksG(), chunksByKey);
        MessageDigest sha = sha256();
        FactorMode mode = m.getMode() == dev.curvewatch.avro.FactorMode.EMA ? FactorMode.EMA : FactorMode.CUMULATIVE;
        FactorState a;
        FactorState g;
        try {
            a = assembleFactor(m, runLayer, FactorKind.A, m.getDIn(), m.getChunksA(), chunksByKey, sha, mode);
            g = assembleFactor(m, runLayer, FactorKind.G, m.getDOut(), m.getChunksG(), chunksByKey, sha, mode);
        } catch (IllegalArgumentException e) { // FactorState: decay, weight or token count out of range
            throw new CheckpointCorruptException(what + ": " + e.getMessage());
        }
        String digest = HexFormat.of().formatHex(sha.digest());
        if (!digest.equalsIgnoreCase(m.getSha256())) {
            throw new CheckpointCorruptException(what + ": chunk checksum " + digest
                    + " differs from the manifest's " + m.getSha256());
        }
        return new FactorCheckpoint(m, a, g);
    }

    /** Most elements of one factor: what one Java array can hold. */
    static final long MAX_FACTOR_ELEMENTS = Integer.MAX_VALUE - 8L;

    private static void checkSide(String what, String name, int side, int chunks) {
        if (side < 1 || (long) side * side > MAX_FACTOR_ELEMENTS) {
            throw new CheckpointCorruptException(what + ": " + name + " " + side + " is outside [1, 46340]");
        }
        if (chunks < 1 || chunks > (long) side * side) {
            throw new CheckpointCorruptException(what + ": " + chunks + " chunks for a " + side + " x " + side + " factor");
        }
    }

    /** Before any allocation: every chunk present, of this version and place, and d x d elements in all. */
    private static void checkChunks(FactorManifest m, String runLayer, FactorKind kind, int dim, int count, Map<String, FactorChunk> chunks) {
        long total = (long) dim * dim;
        long elements = 0;
        int elemSize = m.getDtype() == DType.FLOAT32 ? 4 : 8;
        for (int i = 0; i < count; i++) {
            String key = chunkKey(runLayer, kind, i);
            FactorChunk c = chunks.get(key);
            String where = runLayer + " version " + m.getVersion() + " chunk " + key;
            if (c == null) {
                throw new CheckpointCorruptException(where + " is missing");
            }
            if (c.getVersion() != m.getVersion() || c.getCount() != count || c.getDim() != dim || c.getOffset() != elements
                    || c.getIndex() != i) {
                throw new CheckpointCorruptException(where + " does not belong to it (version " + c.getVersion()
                        + ", count " + c.getCount() + ", dim " + c.getDim() + ", offset " + c.getOffset() + ", expected offset " + elements + ")");
            }
            if (c.getData().getDtype() != m.getDtype()) {
                throw new CheckpointCorruptException(where + " is " + c.getData().getDtype() + ", manifest says " + m.getDtype());
            }
            int bytes = c.getData().getData().remaining();
            if (bytes % elemSize != 0) {
                throw new CheckpointCorruptException(where + " holds " + bytes + " bytes, not whole " + m.getDtype() + " elements");
            }
            elements += bytes / elemSize;
            if (elements > total) {
                throw new CheckpointCorruptException(where + " runs past the " + dim + "x" + dim + " factor");
            }
        }
        if (elements != total) {
            throw new CheckpointCorruptException(runLayer + " version " + m.getVersion() + " factor " + kind + " has "
                    + elements + " of " + total + " elements");
        }
    }

    /** Copies the chunks {@link #checkChunks} accepted into one array, hashing them in order. */
    private static FactorState assembleFactor(FactorManifest m, String runLayer, FactorKind kind, int dim, int count,
                                              Map<String, FactorChunk> chunks, MessageDigest sha, FactorMode mode) {
        int total = dim * dim;
        boolean f32 = m.getDtype() == DType.FLOAT32;
        double[] s64 = f32 ? null : new double[total];
        float[] s32 = f32 ? new float[total] : null;
        int next = 0;
        for (int i = 0; i < count; i++) {
            ByteBuffer data = chunks.get(chunkKey(runLayer, kind, i)).getData().getData().duplicate().order(ByteOrder.LITTLE_ENDIAN);
            sha.update(data.duplicate());
            int n = data.remaining() / (f32 ? 4 : 8);
            for (int k = 0; k < n; k++) {
                if (f32) {
                    s32[next + k] = data.getFloat();
                } else {
                    s64[next + k] = data.getDouble();
                }
            }
            next += n;
        }
        return f32
                ? FactorState.ofFloat32(dim, mode, m.getEmaDecay(), s32, m.getWeight(), m.getTokenCount(), m.getStepFirst(), m.getStepLast())
                : FactorState.ofFloat64(dim, mode, m.getEmaDecay(), s64, m.getWeight(), m.getTokenCount(), m.getStepFirst(), m.getStepLast());
    }

    /** The run/layer of a chunk or manifest key (everything before the last one or two segments). */
    public static String runLayerOf(String key) {
        if (key.endsWith(MANIFEST_SUFFIX)) {
            return key.substring(0, key.length() - MANIFEST_SUFFIX.length());
        }
        int last = key.lastIndexOf('/');
        int kind = last > 0 ? key.lastIndexOf('/', last - 1) : -1;
        return kind > 0 ? key.substring(0, kind) : key;
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
