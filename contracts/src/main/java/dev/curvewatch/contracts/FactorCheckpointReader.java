package dev.curvewatch.contracts;

import dev.curvewatch.avro.FactorChunk;
import dev.curvewatch.avro.FactorKind;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;
import java.util.function.Predicate;

/**
 * Reads the factors topic record by record (read_committed, in topic order) and assembles a
 * layer's checkpoint when asked: for consumers that follow the topic live, such as the service,
 * as well as for {@link FactorCheckpoints#scan}. Keeps the newest manifest and the newest chunk
 * under each chunk key of the wanted layers, so memory is about one copy of their factors.
 *
 * <p>Chunks of version v+1 arrive before manifest v+1 and replace those of v, and a poll may end
 * in the middle of a checkpoint's transaction: {@link #isComplete} says whether the chunks held
 * are exactly those of the newest manifest, and {@link #assemble} checks it again, with the
 * checksum. Not thread-safe: one reader per consuming thread; {@link #detach} hands a checkpoint's
 * parts to another thread to assemble there.
 *
 * <p>A manifest is kept only if its run and layer are those of its key and the reader's
 * {@code check} accepts it, so a malformed manifest never replaces a good one (and never makes
 * anyone allocate its d x d sizes); its chunks are assembled only when asked.
 */
public final class FactorCheckpointReader {
    private final CheckpointCodec codec = new CheckpointCodec(1 << 20);
    private final Predicate<String> wanted;
    private final Consumer<FactorManifest> check;
    private final Map<String, FactorManifest> manifests = new HashMap<>();
    private final Map<String, Map<String, FactorChunk>> chunks = new HashMap<>();
    private long bytesHeld;

    /**
     * The newest manifest of a layer and the chunks held for it, detached from the reader (the
     * chunk records are immutable and shared, not copied): {@link #assemble} may run on another
     * thread while the reader goes on taking records.
     */
    public record Parts(FactorManifest manifest, Map<String, FactorChunk> chunks) {
        private static final CheckpointCodec CODEC = new CheckpointCodec(1 << 20);

        public Parts {
            chunks = Map.copyOf(chunks);
        }

        /**
         * The checkpoint, checksum verified (sha256 and decoding of the d^2 values happen here).
         *
         * @throws CheckpointCorruptException if the chunks do not match the manifest
         */
        public FactorCheckpoint assemble() {
            return CODEC.assemble(manifest, chunks);
        }
    }

    /** @param wanted which run/layer keys to keep ({@code key -> true} for all) */
    public FactorCheckpointReader(Predicate<String> wanted) {
        this(wanted, m -> { });
    }

    /**
     * @param wanted which run/layer keys to keep
     * @param check  called with every decoded manifest of a wanted layer before it is kept; an
     *               {@link InvalidRecordException} it throws refuses the manifest ({@link #accept}
     *               rethrows it and the previous manifest stays)
     */
    public FactorCheckpointReader(Predicate<String> wanted, Consumer<FactorManifest> check) {
        this.wanted = wanted;
        this.check = check;
    }

    /**
     * Takes one record of the factors topic.
     *
     * @return the run/layer when the record is a manifest (a new "factors ready"), else empty
     * @throws InvalidRecordException if the value does not decode, or a manifest's run/layer is
     *         not its key's (KEY_MISMATCH) or the check refuses it; nothing is kept then
     */
    public Optional<String> accept(byte[] key, byte[] value) {
        if (key == null) {
            return Optional.empty();
        }
        String k = new String(key, StandardCharsets.UTF_8);
        String runLayer = CheckpointCodec.runLayerOf(k);
        if (!wanted.test(runLayer)) {
            return Optional.empty();
        }
        boolean manifest = codec.isManifestKey(k);
        if (value == null) { // tombstone: the layer's checkpoint (or one chunk) was deleted
            if (manifest) {
                manifests.remove(runLayer);
            } else {
                Map<String, FactorChunk> m = chunks.get(runLayer);
                if (m != null) {
                    FactorChunk old = m.remove(k);
                    bytesHeld -= old == null ? 0 : old.getData().getData().remaining();
                }
            }
            return Optional.empty();
        }
        if (manifest) {
            FactorManifest m = codec.decodeManifest(value);
            if (!runLayer.equals(m.getRunId() + "/" + m.getLayer())) {
                throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "manifest key '" + k + "' is not that of its run/layer '"
                        + m.getRunId() + "/" + m.getLayer() + "'");
            }
            check.accept(m);
            manifests.put(runLayer, m);
            return Optional.of(runLayer);
        }
        FactorChunk c = codec.decodeChunk(value);
        FactorChunk old = chunks.computeIfAbsent(runLayer, x -> new HashMap<>()).put(k, c);
        bytesHeld += c.getData().getData().remaining() - (old == null ? 0 : old.getData().getData().remaining());
        return Optional.empty();
    }

    /** The newest manifest of a run/layer. */
    public Optional<FactorManifest> manifest(String runLayer) {
        return Optional.ofNullable(manifests.get(runLayer));
    }

    /** Every run/layer with a manifest. */
    public java.util.Set<String> layers() {
        return java.util.Collections.unmodifiableSet(manifests.keySet());
    }

    /**
     * Whether every chunk the newest manifest lists is held with the manifest's version (no
     * checksum yet): false while the next version's chunks are half way in.
     */
    public boolean isComplete(String runLayer) {
        FactorManifest m = manifests.get(runLayer);
        Map<String, FactorChunk> held = chunks.get(runLayer);
        if (m == null || held == null) {
            return false;
        }
        return complete(m, held, FactorKind.A, m.getChunksA(), runLayer) && complete(m, held, FactorKind.G, m.getChunksG(), runLayer);
    }

    private static boolean complete(FactorManifest m, Map<String, FactorChunk> held, FactorKind kind, int count, String runLayer) {
        for (int i = 0; i < count; i++) {
            FactorChunk c = held.get(CheckpointCodec.chunkKey(runLayer, kind, i));
            if (c == null || c.getVersion() != m.getVersion()) {
                return false;
            }
        }
        return true;
    }

    /**
     * The checkpoint of the newest manifest, checksum verified.
     *
     * @throws CheckpointCorruptException if there is no manifest or its chunks do not match it
     */
    public FactorCheckpoint assemble(String runLayer) {
        FactorManifest m = manifests.get(runLayer);
        if (m == null) {
            throw new CheckpointCorruptException(runLayer + " has no manifest");
        }
        return codec.assemble(m, chunks.getOrDefault(runLayer, Map.of()));
    }

    /**
     * The newest manifest and the chunks held for it, to {@link Parts#assemble assemble} on
     * another thread; empty without a manifest. Cheap: no chunk data is copied or hashed here.
     */
    public Optional<Parts> detach(String runLayer) {
        FactorManifest m = manifests.get(runLayer);
        return m == null ? Optional.empty() : Optional.of(new Parts(m, chunks.getOrDefault(runLayer, Map.of())));
    }

    /** Drops everything held for a run/layer. */
    public void forget(String runLayer) {
        manifests.remove(runLayer);
        Map<String, FactorChunk> m = chunks.remove(runLayer);
        if (m != null) {
            m.values().forEach(c -> bytesHeld -= c.getData().getData().remaining());
        }
    }

    /** Drops everything held for every layer of a run, manifests and chunks alike (also chunks whose manifest never came). */
    public void forgetRun(String runId) {
        String prefix = runId + "/";
        manifests.keySet().removeIf(k -> k.startsWith(prefix));
        for (var it = chunks.entrySet().iterator(); it.hasNext(); ) {
            var e = it.next();
            if (e.getKey().startsWith(prefix)) {
                e.getValue().values().forEach(c -> bytesHeld -= c.getData().getData().remaining());
                it.remove();
            }
        }
    }

    /** Chunk data bytes held (the memory this reader costs). */
    public long bytesHeld() {
        return bytesHeld;
    }
}
