package dev.curvewatch.service.internal;

import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import dev.curvewatch.schemas.ContractChecks;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.Optional;
import java.util.UUID;

/**
 * The directory of edited snapshots: {@code <root>/<run>/<snapshot id>.safetensors}. Nothing from
 * a request becomes a path unchecked: run and snapshot ids must be {@link ContractChecks} ids
 * that can name a file, file names are made here, the root is canonicalised once and every
 * resolved path (and, for reads, its real path behind links) must lie inside it. Files appear
 * atomically: written to a temporary name in the same directory, forced to disk, then moved over.
 */
public final class SnapshotStore {
    /** A stored file: its path relative to the root (the SnapshotEvent's uri), sha256 and size. */
    public record Stored(String uri, Path path, String sha256, long sizeBytes) {
    }

    private final Path root;

    public SnapshotStore(Path root) throws IOException {
        Files.createDirectories(root);
        this.root = root.toRealPath();
    }

    public Path root() {
        return root;
    }

    /**
     * Where a snapshot lives.
     *
     * @throws dev.curvewatch.schemas.InvalidRecordException for an id that cannot name a file
     * @throws IllegalArgumentException if the path would leave the store (defence in depth)
     */
    public Path pathFor(String runId, String snapshotId) {
        ContractChecks.requirePathSegment(runId, "run_id");
        ContractChecks.requirePathSegment(snapshotId, "snapshot_id");
        return inside(root.resolve(runId).resolve(snapshotId + ".safetensors"));
    }

    private Path inside(Path p) {
        Path n = p.toAbsolutePath().normalize();
        if (!n.startsWith(root) || n.equals(root)) {
            throw new IllegalArgumentException("path " + p + " leaves the snapshot store " + root);
        }
        return n;
    }

    /** Writes the file atomically and returns where it is, its sha256 and size. */
    public Stored write(String runId, String snapshotId, SafetensorsWriter content) throws IOException {
        Path target = pathFor(runId, snapshotId);
        Path dir = target.getParent();
        Files.createDirectories(dir);
        if (!dir.toRealPath().startsWith(root)) { // a run directory that is a link out of the store
            throw new IOException("run directory " + dir + " resolves outside the snapshot store " + root);
        }
        Path tmp = dir.resolve("." + snapshotId + "." + UUID.randomUUID() + ".tmp");
        MessageDigest sha = Fingerprints.sha256();
        long size;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                DigestOutputStream digest = new DigestOutputStream(Channels.newOutputStream(ch), sha);
                OutputStream out = new BufferedOutputStream(digest, 1 << 20);
                content.write(out);
                out.flush();
                ch.force(true);
                size = ch.size();
            }
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
            forceDirectory(dir);
        } finally {
            Files.deleteIfExists(tmp);
        }
        return new Stored(root.relativize(target).toString().replace('\\', '/'), target, HexFormat.of().formatHex(sha.digest()), size);
    }

    private static void forceDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | UnsupportedOperationException ignored) {
            // not every file system lets a directory be opened; the rename is still atomic
        }
    }

    /**
     * The file of a stored uri (as published in a SnapshotEvent), if it exists and both its path
     * and its real path stay inside the store; empty for anything else.
     */
    public Optional<Path> resolve(String uri) {
        if (uri == null || uri.isEmpty() || uri.contains("\\") || uri.startsWith("/")) {
            return Optional.empty();
        }
        String[] parts = uri.split("/");
        if (parts.length != 2 || !parts[1].endsWith(".safetensors")) {
            return Optional.empty();
        }
        try {
            Path p = pathFor(parts[0], parts[1].substring(0, parts[1].length() - ".safetensors".length()));
            if (!Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS) || !p.toRealPath().startsWith(root)) {
                return Optional.empty();
            }
            return Optional.of(p);
        } catch (RuntimeException | IOException e) { // an unsafe id, a vanished file
            return Optional.empty();
        }
    }
}
