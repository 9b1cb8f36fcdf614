package dev.curvewatch.schemas;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;

/**
 * The one grammar of a SnapshotEvent's {@code uri} (SERVICE-CONTRACT §4) and the one way to turn
 * it into a file under a snapshot store, for the service that writes snapshots and every reader
 * that loads them.
 *
 * <p>Grammar: {@code <run_id>/<snapshot_id>.safetensors}, exactly two segments separated by one
 * {@code /}, each an id of {@link ContractChecks#requirePathSegment} (1-128 characters of
 * {@code [A-Za-z0-9._:-]}, not {@code .} or {@code ..}). So no absolute path, scheme-less
 * {@code //}, backslash, percent-encoding, empty or dot segment and no deeper directory is a
 * uri; {@link #uriOf} builds exactly the accepted strings.
 *
 * <p>{@link #resolve} adds what a grammar cannot see: the store root is canonicalised (links
 * resolved), the joined path is normalised and must lie strictly inside it, and every part of it
 * that exists on disk, links followed, must still lie inside the real root (a run directory that
 * is a link out of the store is refused).
 */
public final class SnapshotUris {
    /** File name suffix of every snapshot. */
    public static final String SUFFIX = ".safetensors";

    /** A parsed uri. */
    public record Uri(String runId, String snapshotId) {
        public Uri {
            ContractChecks.requirePathSegment(runId, "run_id");
            ContractChecks.requirePathSegment(snapshotId, "snapshot_id");
        }

        /** The uri text, {@code <run_id>/<snapshot_id>.safetensors}. */
        @Override
        public String toString() {
            return runId + "/" + snapshotId + SUFFIX;
        }
    }

    private SnapshotUris() {
    }

    /**
     * The uri of a snapshot.
     *
     * @throws InvalidRecordException (INVALID_FIELD) when an id cannot name a file
     */
    public static String uriOf(String runId, String snapshotId) {
        return new Uri(runId, snapshotId).toString();
    }

    /**
     * Parses a uri of the grammar above.
     *
     * @throws InvalidRecordException (INVALID_FIELD) for anything else
     */
    public static Uri parse(String uri) {
        if (uri == null || uri.isEmpty() || uri.length() > 2 * 128 + 1 + SUFFIX.length()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "uri must be <run_id>/<snapshot_id>" + SUFFIX + ", got "
                    + (uri == null ? "null" : uri.isEmpty() ? "an empty string" : uri.length() + " characters"));
        }
        int slash = uri.indexOf('/');
        if (slash < 0 || uri.indexOf('/', slash + 1) >= 0 || !uri.endsWith(SUFFIX) || uri.length() - SUFFIX.length() <= slash + 1) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "uri '" + printable(uri) + "' is not <run_id>/<snapshot_id>" + SUFFIX);
        }
        return new Uri(uri.substring(0, slash), uri.substring(slash + 1, uri.length() - SUFFIX.length()));
    }

    /**
     * The file a uri names under {@code root} (which must exist). The file itself need not exist
     * (a writer resolves before it writes); whatever part of the path exists must, links
     * followed, stay inside the real root.
     *
     * @return the normalised absolute path under the canonical root
     * @throws InvalidRecordException (INVALID_FIELD) for a uri outside the grammar
     * @throws IOException            when the root cannot be resolved, or the path or an existing
     *                                part of it leads outside the store
     */
    public static Path resolve(Path root, String uri) throws IOException {
        Uri u = parse(uri);
        Path realRoot = root.toRealPath();
        Path p = realRoot.resolve(u.runId()).resolve(u.snapshotId() + SUFFIX).normalize();
        if (!p.startsWith(realRoot) || p.getNameCount() != realRoot.getNameCount() + 2) {
            throw new IOException("uri '" + printable(uri) + "' resolves to " + p + ", outside the snapshot store " + realRoot);
        }
        for (Path part = p; part != null && !part.equals(realRoot); part = part.getParent()) {
            if (Files.exists(part, LinkOption.NOFOLLOW_LINKS)) {
                Path real = part.toRealPath();
                if (!real.startsWith(realRoot) || real.equals(realRoot)) {
                    throw new IOException("uri '" + printable(uri) + "' leads through " + part + " to " + real
                            + ", outside the snapshot store " + realRoot);
                }
                break; // everything above an existing path inside the root is inside too
            }
        }
        return p;
    }

    private static String printable(String s) {
        String t = s.length() > 120 ? s.substring(0, 120) + "..." : s;
        return t.replaceAll("\\p{Cntrl}", "?");
    }
}
