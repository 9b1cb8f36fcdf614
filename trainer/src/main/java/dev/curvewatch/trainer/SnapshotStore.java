package dev.curvewatch.trainer;

import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.curvature.safetensors.Dtype;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.curvature.safetensors.TensorInfo;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.SnapshotUris;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Function;
import java.util.regex.Pattern;

/**
 * The directory the service writes edited snapshots into (SERVICE-CONTRACT §4), as the trainer
 * reads it: a {@link SnapshotEvent}'s uri is exactly {@code <run_id>/<snapshot_id>.safetensors} of
 * that event, resolved under this root by {@link SnapshotUris} (the grammar and resolution the
 * service writes with: no absolute path, scheme, {@code ..}, backslash or other directory; the
 * real path, links followed, inside the canonical root). {@link #verify} resolves it, requires a
 * regular file, copies it to a private temporary file while hashing it
 * (so what is parsed is exactly what was hashed, whatever happens to the original afterwards),
 * checks size and sha256, then reads the copy with {@link SafetensorsFile} and checks every tensor
 * against the watched layers: names {@code <layer>.weight} / {@code <layer>.bias}, F32, shapes
 * d_out x d_in / d_out, finite values, the same layers as the event, and the run in the metadata.
 */
public final class SnapshotStore {
    /** Largest snapshot read (the trainer's layers are far smaller). */
    public static final long MAX_BYTES = 1L << 30;
    private static final Pattern SHA256 = Pattern.compile("[0-9a-fA-F]{64}");

    private final Path root;

    /**
     * @param root an existing directory (canonicalised once, symlinks resolved)
     * @throws IOException when it does not exist or is not a directory
     */
    public SnapshotStore(Path root) throws IOException {
        Path real = root.toRealPath();
        if (!Files.isDirectory(real)) {
            throw new IOException("snapshot store " + root + " is not a directory");
        }
        this.root = real;
    }

    public Path root() {
        return root;
    }

    /** Why a snapshot was refused: a short reason ({@code path}, {@code size}, ...) and a message. */
    public static final class Refusal extends Exception {
        private final String reason;

        public Refusal(String reason, String message) {
            super(message);
            this.reason = reason;
        }

        public String reason() {
            return reason;
        }
    }

    /** A snapshot that passed every check: the edited layers' weights (and biases, where present). */
    public record Verified(SnapshotEvent event, Path file, Map<String, float[]> weights, Map<String, float[]> biases) {
    }

    /**
     * The uri of the {@link SnapshotUris} grammar, parsed.
     *
     * @throws Refusal ({@code path}) for anything else (an absolute path, a scheme, {@code ..}, ...)
     */
    public static SnapshotUris.Uri parse(String uri) throws Refusal {
        try {
            return SnapshotUris.parse(uri);
        } catch (InvalidRecordException e) {
            throw new Refusal("path", e.getMessage() + " (SERVICE-CONTRACT §4: the path relative to the snapshot store)");
        }
    }

    /**
     * The real path of the file a uri names, inside the root ({@link SnapshotUris#resolve}).
     *
     * @throws Refusal {@code path} for a uri outside the grammar, one that leads (through a link)
     *                 outside the store, or a file that is not a regular file; {@code missing}
     *                 when there is no such file
     */
    public Path resolve(String uri) throws Refusal {
        parse(uri);
        Path file;
        try {
            file = SnapshotUris.resolve(root, uri);
        } catch (NoSuchFileException e) {
            throw new Refusal("missing", "the snapshot store " + root + " does not exist any more: " + e.getMessage());
        } catch (IOException e) {
            throw new Refusal("path", e.getMessage());
        }
        Path real;
        try {
            real = file.toRealPath();
        } catch (NoSuchFileException e) {
            throw new Refusal("missing", "snapshot file " + file + " does not exist");
        } catch (IOException e) {
            throw new Refusal("missing", "snapshot file " + file + " cannot be resolved: " + e.getMessage());
        }
        if (!real.startsWith(root)) { // SnapshotUris checked this; a link swapped in since would show here
            throw new Refusal("path", "uri '" + printable(uri) + "' now leads to " + real + ", outside the snapshot store " + root);
        }
        if (!Files.isRegularFile(real, LinkOption.NOFOLLOW_LINKS)) {
            throw new Refusal("path", "snapshot " + real + " is not a regular file");
        }
        return real;
    }

    /**
     * Resolves, copies, hashes and reads the event's snapshot.
     *
     * @param layers the watched layers by name (unknown names are refused)
     */
    public Verified verify(SnapshotEvent event, String runId, Function<String, Optional<LayerShape>> layers)
            throws Refusal {
        if (!runId.equals(event.getRunId())) {
            throw new Refusal("run", "snapshot " + event.getSnapshotId() + " is for run '" + event.getRunId()
                    + "', not '" + runId + "'");
        }
        if (event.getSha256() == null || !SHA256.matcher(event.getSha256()).matches()) {
            throw new Refusal("sha256", "sha256 '" + printable(String.valueOf(event.getSha256())) + "' is not 64 hex digits");
        }
        if (event.getSizeBytes() < 8 || event.getSizeBytes() > MAX_BYTES) {
            throw new Refusal("size", "size_bytes " + event.getSizeBytes() + " is outside [8, " + MAX_BYTES + "]");
        }
        SnapshotUris.Uri uri = parse(event.getUri());
        if (!uri.runId().equals(event.getRunId()) || !uri.snapshotId().equals(event.getSnapshotId())) {
            throw new Refusal("path", "uri '" + printable(event.getUri()) + "' is not snapshot " + event.getSnapshotId()
                    + "'s own <run_id>/<snapshot_id>" + SnapshotUris.SUFFIX + " ('" + event.getRunId() + "/"
                    + event.getSnapshotId() + SnapshotUris.SUFFIX + "')");
        }
        Path file = resolve(event.getUri());
        Path copy = null;
        try {
            long size = Files.size(file);
            if (size != event.getSizeBytes()) {
                throw new Refusal("size", "snapshot " + file + " has " + size + " bytes, the event says " + event.getSizeBytes());
            }
            copy = Files.createTempFile("curvewatch-snapshot-", ".safetensors");
            MessageDigest sha = sha256();
            long copied;
            try (InputStream in = new DigestInputStream(Files.newInputStream(file, LinkOption.NOFOLLOW_LINKS), sha);
                 OutputStream out = Files.newOutputStream(copy)) {
                copied = copyAtMost(in, out, event.getSizeBytes() + 1);
            }
            if (copied != event.getSizeBytes()) {
                throw new Refusal("size", "snapshot " + file + " changed while it was read (" + copied + " bytes, the event says "
                        + event.getSizeBytes() + ")");
            }
            String actual = HexFormat.of().formatHex(sha.digest());
            if (!actual.equalsIgnoreCase(event.getSha256())) {
                throw new Refusal("sha256", "snapshot " + file + " has sha256 " + actual + ", the event says "
                        + event.getSha256().toLowerCase(java.util.Locale.ROOT));
            }
            return read(event, runId, file, copy, layers);
        } catch (IOException e) {
            throw new Refusal("format", "snapshot " + file + " cannot be read: " + e.getMessage());
        } finally {
            if (copy != null) {
                try {
                    Files.deleteIfExists(copy);
                } catch (IOException ignored) {
                    // a temporary file left behind is harmless
                }
            }
        }
    }

    private static Verified read(SnapshotEvent event, String runId, Path file, Path copy,
                                 Function<String, Optional<LayerShape>> layers) throws IOException, Refusal {
        Map<String, float[]> weights = new LinkedHashMap<>();
        Map<String, float[]> biases = new LinkedHashMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(copy)) {
            String fileRun = f.metadata().get("curvewatch.run_id");
            if (fileRun != null && !fileRun.equals(runId)) {
                throw new Refusal("run", "snapshot " + file + " holds weights of run '" + fileRun + "', not '" + runId + "'");
            }
            for (TensorInfo t : f.tensors()) {
                String name = t.name();
                int dot = name.lastIndexOf('.');
                String layer = dot < 0 ? name : name.substring(0, dot);
                String part = dot < 0 ? "" : name.substring(dot + 1);
                LayerShape shape = layers.apply(layer).orElse(null);
                if (shape == null || !(part.equals("weight") || part.equals("bias"))) {
                    throw new Refusal("unknown-tensor", "snapshot " + file + " holds tensor '" + name
                            + "', which is not <watched layer>.weight or .bias");
                }
                if (t.dtype() != Dtype.F32) {
                    throw new Refusal("dtype", "tensor '" + name + "' is " + t.dtype() + ", expected F32");
                }
                long[] want = part.equals("weight") ? new long[] {shape.dOut(), shape.dIn()} : new long[] {shape.dOut()};
                if (!java.util.Arrays.equals(t.shape(), want)) {
                    throw new Refusal("shape", "tensor '" + name + "' has shape " + java.util.Arrays.toString(t.shape())
                            + ", layer " + layer + " needs " + java.util.Arrays.toString(want));
                }
                if (part.equals("bias") && !shape.hasBias()) {
                    throw new Refusal("shape", "tensor '" + name + "': layer " + layer + " has no bias");
                }
                float[] values = f.readFloat32(name);
                for (int i = 0; i < values.length; i++) {
                    if (!Float.isFinite(values[i])) {
                        throw new Refusal("non-finite", "tensor '" + name + "' has " + values[i] + " at element " + i);
                    }
                }
                (part.equals("weight") ? weights : biases).put(layer, values);
            }
        }
        if (weights.isEmpty()) {
            throw new Refusal("format", "snapshot " + file + " holds no <layer>.weight of a watched layer");
        }
        for (String layer : biases.keySet()) {
            if (!weights.containsKey(layer)) {
                throw new Refusal("format", "snapshot " + file + " holds " + layer + ".bias without " + layer + ".weight");
            }
        }
        Set<String> listed = new LinkedHashSet<>();
        for (LayerRho lr : event.getLayers()) {
            listed.add(lr.getLayer());
        }
        if (!listed.isEmpty() && !listed.equals(weights.keySet())) {
            throw new Refusal("layers", "the event lists layers " + listed + " but the file holds weights of "
                    + weights.keySet());
        }
        return new Verified(event, file, weights, biases);
    }

    private static long copyAtMost(InputStream in, OutputStream out, long limit) throws IOException {
        byte[] buf = new byte[1 << 16];
        long total = 0;
        int n;
        while (total < limit && (n = in.read(buf, 0, (int) Math.min(buf.length, limit - total))) > 0) {
            out.write(buf, 0, n);
            total += n;
        }
        return total;
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is part of every JDK", e);
        }
    }

    private static String printable(String s) {
        String t = s.length() > 120 ? s.substring(0, 120) + "..." : s;
        return t.replaceAll("\\p{Cntrl}", "?");
    }
}
