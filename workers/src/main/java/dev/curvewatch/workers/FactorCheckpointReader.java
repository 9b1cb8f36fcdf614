package dev.curvewatch.workers;

import dev.curvewatch.avro.FactorChunk;
import dev.curvewatch.avro.FactorKind;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.workers.internal.CheckpointCodec;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
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
 * checksum. Not thread-safe: one reader per consuming thread.
 */
public final class FactorCheckpointReader {
    private final CheckpointCodec codec = new CheckpointCodec(1 << 20);
    private final Predicate<String> wanted;
    private final Map<String, FactorManifest> manifests = new HashMap<>();
    private final Map<String, Map<String, FactorChunk>> chunks = new HashMap<>();
    private long bytesHeld;

    /** @param wanted which run/layer keys to keep ({@code key -> true} for all) */
    public FactorCheckpointReader(Predicate<String> wanted) {
        this.wanted = wanted;
    }

    /**
     * Takes one record of the factors topic.
     *
     * @return the run/layer when the record is a manifest (a new "factors ready"), else empty
     * @throws InvalidRecordException if the value does not decode
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
            manifests.put(runLayer, codec.decodeManifest(value));
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

    /** Drops everything held for a run/layer. */
    public void forget(String runLayer) {
        manifests.remove(runLayer);
        Map<String, FactorChunk> m = chunks.remove(runLayer);
        if (m != null) {
            m.values().forEach(c -> bytesHeld -= c.getData().getData().remaining());
        }
    }

    /** Chunk data bytes held (the memory this reader costs). */
    public long bytesHeld() {
        return bytesHeld;
    }
}
