package dev.curvewatch.trainer;

import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.curvature.safetensors.Dtype;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.curvature.safetensors.TensorInfo;

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
 * reads it: a {@link SnapshotEvent}'s uri is a path relative to this root. {@link #verify} resolves
 * it (refusing absolute paths, URIs with a scheme, {@code ..} and anything that, symlinks
 * followed, lies outside the root), copies the file to a private temporary file while hashing it
 * (so what is parsed is exactly what was hashed, whatever happens to the original afterwards),
 * checks size and sha256, then reads the copy with {@link SafetensorsFile} and checks every tensor
 * against the watched layers: names {@code <layer>.weight} / {@code <layer>.bias}, F32, shapes
 * d_out x d_in / d_out, finite values, the same layers as the event, and the run in the metadata.
 */
public final class SnapshotStore {
    /** Largest snapshot read (the trainer's layers are far smaller). */
    public static final long MAX_BYTES = 1L << 30;
    private static final Pattern SCHEME = Pattern.compile("^[A-Za-z][A-Za-z0-9+.-]*:.*");
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
     * The file a uri names, inside the root.
     *
     * @throws Refusal ({@code path}) for an absolute path, a URI scheme, {@code ..}, a backslash or
     *                 NUL, a missing file, a non-regular file, or a real path outside the root
     */
    public Path resolve(String uri) throws Refusal {
        if (uri == null || uri.isEmpty() || uri.length() > 1024) {
            throw new Refusal("path", "uri must be a relative path of 1-1024 characters");
        }
        if (uri.indexOf('\0') >= 0 || uri.indexOf('\\') >= 0) {
            throw new Refusal("path", "uri '" + printable(uri) + "' contains a NUL or backslash");
        }
        if (uri.startsWith("/") || SCHEME.matcher(uri).matches()) {
            throw new Refusal("path", "uri '" + printable(uri) + "' is absolute or has a scheme; snapshot uris are paths "
                    + "relative to the snapshot store " + root);
        }
        for (String segment : uri.split("/", -1)) {
            if (segment.equals("..")) {
                throw new Refusal("path", "uri '" + printable(uri) + "' contains '..': it may not leave the snapshot store");
            }
        }
        Path candidate = root.resolve(uri).normalize();
        if (!candidate.startsWith(root)) {
            throw new Refusal("path", "uri '" + printable(uri) + "' resolves outside the snapshot store " + root);
        }
        Path real;
        try {
            real = candidate.toRealPath();
        } catch (NoSuchFileException e) {
            throw new Refusal("missing", "snapshot file " + candidate + " does not exist");
        } catch (IOException e) {
            throw new Refusal("missing", "snapshot file " + candidate + " cannot be resolved: " + e.getMessage());
        }
        if (!real.startsWith(root)) {
            throw new Refusal("path", "uri '" + printable(uri) + "' leads through a symbolic link to " + real
                    + ", outside the snapshot store " + root);
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
