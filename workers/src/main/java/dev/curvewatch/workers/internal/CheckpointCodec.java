package dev.curvewatch.workers.internal;

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
import dev.curvewatch.workers.CheckpointCorruptException;
import dev.curvewatch.workers.FactorCheckpoint;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
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
     * every chunk must carry the manifest's version.
     */
    public FactorCheckpoint assemble(FactorManifest m, Map<String, FactorChunk> chunksByKey) {
        String runLayer = m.getRunId() + "/" + m.getLayer();
        MessageDigest sha = sha256();
        FactorMode mode = m.getMode() == dev.curvewatch.avro.FactorMode.EMA ? FactorMode.EMA : FactorMode.CUMULATIVE;
        FactorState a = assembleFactor(m, runLayer, FactorKind.A, m.getDIn(), m.getChunksA(), chunksByKey, sha, mode);
        FactorState g = assembleFactor(m, runLayer, FactorKind.G, m.getDOut(), m.getChunksG(), chunksByKey, sha, mode);
        String digest = HexFormat.of().formatHex(sha.digest());
        if (!digest.equalsIgnoreCase(m.getSha256())) {
            throw new CheckpointCorruptException(runLayer + " version " + m.getVersion() + ": chunk checksum " + digest
                    + " differs from the manifest's " + m.getSha256());
        }
        return new FactorCheckpoint(m, a, g);
    }

    private static FactorState assembleFactor(FactorManifest m, String runLayer, FactorKind kind, int dim, int count,
                                              Map<String, FactorChunk> chunks, MessageDigest sha, FactorMode mode) {
        long total = (long) dim * dim;
        boolean f32 = m.getDtype() == DType.FLOAT32;
        double[] s64 = f32 ? null : new double[(int) total];
        float[] s32 = f32 ? new float[(int) total] : null;
        long next = 0;
        for (int i = 0; i < count; i++) {
            String key = chunkKey(runLayer, kind, i);
            FactorChunk c = chunks.get(key);
            String where = runLayer + " version " + m.getVersion() + " chunk " + key;
            if (c == null) {
                throw new CheckpointCorruptException(where + " is missing");
            }
            if (c.getVersion() != m.getVersion() || c.getCount() != count || c.getDim() != dim || c.getOffset() != next
                    || c.getIndex() != i) {
                throw new CheckpointCorruptException(where + " does not belong to it (version " + c.getVersion()
                        + ", count " + c.getCount() + ", dim " + c.getDim() + ", offset " + c.getOffset() + ", expected offset " + next + ")");
            }
            ByteBuffer data = c.getData().getData().duplicate().order(ByteOrder.LITTLE_ENDIAN);
            if (c.getData().getDtype() != m.getDtype()) {
                throw new CheckpointCorruptException(where + " is " + c.getData().getDtype() + ", manifest says " + m.getDtype());
            }
            sha.update(data.duplicate());
            int n = data.remaining() / (f32 ? 4 : 8);
            if (next + n > total) {
                throw new CheckpointCorruptException(where + " runs past the " + dim + "x" + dim + " factor");
            }
            for (int k = 0; k < n; k++) {
                if (f32) {
                    s32[(int) next + k] = data.getFloat();
                } else {
                    s64[(int) next + k] = data.getDouble();
                }
            }
            next += n;
        }
        if (next != total) {
            throw new CheckpointCorruptException(runLayer + " version " + m.getVersion() + " factor " + kind + " has "
                    + next + " of " + total + " elements");
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

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Unused-chunk guard for callers listing what a version needs. */
    public static List<FactorKind> kinds() {
        return List.of(FactorKind.A, FactorKind.G);
    }
}
