package dev.curvewatch.service.internal;

import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import dev.curvewatch.schemas.SnapshotUris;

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
 * The directory of edited snapshots: {@code <root>/<run>/<snapshot id>.safetensors}, the uri
 * grammar and resolution of {@link SnapshotUris} (shared with every reader of snapshots). Nothing
 * from a request becomes a path unchecked: run and snapshot ids must be ids that can name a file,
 * file names are made here, the root is canonicalised once and every resolved path (and its real
 * path behind links) must lie inside it; reads also refuse a file that is itself a link. Files
 * appear atomically: written to a temporary name in the same directory, forced to disk, then
 * moved over.
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
     * @throws IOException if the path, or an existing part of it behind links, would leave the store
     */
    public Path pathFor(String runId, String snapshotId) throws IOException {
        return SnapshotUris.resolve(root, SnapshotUris.uriOf(runId, snapshotId));
    }

    /** Writes the file atomically and returns where it is, its sha256 and size. */
    public Stored write(String runId, String snapshotId, SafetensorsWriter content) throws IOException {
        String uri = SnapshotUris.uriOf(runId, snapshotId);
        Path target = SnapshotUris.resolve(root, uri);
        Path dir = target.getParent();
        Files.createDirectories(dir);
        SnapshotUris.resolve(root, uri); // again, now that the run directory exists: it may be a link out
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
        return new Stored(uri, target, HexFormat.of().formatHex(sha.digest()), size);
    }

    private static void forceDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | UnsupportedOperationException ignored) {
            // not every file system lets a directory be opened; the rename is still atomic
        }
    }

    /**
     * The file of a stored uri (as published in a SnapshotEvent), if the uri is of the
     * {@link SnapshotUris} grammar, the file exists, is not itself a link, and both its path and
     * its real path stay inside the store; empty for anything else.
     */
    public Optional<Path> resolve(String uri) {
        try {
            Path p = SnapshotUris.resolve(root, uri);
            if (!Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)) {
                return Optional.empty();
            }
            return Optional.of(p);
        } catch (RuntimeException | IOException e) { // outside the grammar, a link out, a vanished file
            return Optional.empty();
        }
    }
}
