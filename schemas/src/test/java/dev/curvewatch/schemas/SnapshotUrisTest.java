package dev.curvewatch.schemas;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SnapshotUrisTest {
    @Test
    void uriOfAndParseAreInverse() {
        String uri = SnapshotUris.uriOf("run-1", "snap-0a1b");
        assertEquals("run-1/snap-0a1b.safetensors", uri);
        SnapshotUris.Uri u = SnapshotUris.parse(uri);
        assertEquals("run-1", u.runId());
        assertEquals("snap-0a1b", u.snapshotId());
        assertEquals(uri, u.toString());
        assertEquals("..a/b..safetensors", SnapshotUris.uriOf("..a", "b."), "dots inside an id are fine");
    }

    @Test
    void onlyTheGrammarParses() {
        for (String uri : List.of("", "x.safetensors", "/run/s.safetensors", "run/s.bin", "run/sub/s.safetensors", "../s.safetensors",
                "run/...safetensors", "./s.safetensors", "run/.safetensors", "run//s.safetensors", "run\\s.safetensors",
                "run/s%2F..safetensors", "run/s .safetensors", "file:///etc/passwd", "run/" + "x".repeat(129) + ".safetensors",
                "run/s.safetensors/")) {
            InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> SnapshotUris.parse(uri), uri);
            assertEquals(RejectReason.INVALID_FIELD, e.reason(), uri);
        }
        assertThrows(InvalidRecordException.class, () -> SnapshotUris.parse(null));
        for (String[] ids : new String[][]{{"..", "s"}, {"r", "."}, {"a/b", "s"}, {"r", ""}}) {
            assertThrows(InvalidRecordException.class, () -> SnapshotUris.uriOf(ids[0], ids[1]), String.join("|", ids));
        }
    }

    @Test
    void resolveStaysInsideTheCanonicalRoot(@TempDir Path dir) throws IOException {
        Path root = Files.createDirectories(dir.resolve("store"));
        Path viaLink = Files.createSymbolicLink(dir.resolve("store-link"), root);
        Path p = SnapshotUris.resolve(viaLink, "run-1/s1.safetensors");
        assertEquals(root.toRealPath().resolve("run-1").resolve("s1.safetensors"), p, "the root is canonicalised; the file need not exist");
        Files.createDirectories(p.getParent());
        Files.writeString(p, "x");
        assertEquals(p, SnapshotUris.resolve(root, "run-1/s1.safetensors"));
    }

    @Test
    void linksOutOfTheStoreAreRefused(@TempDir Path dir) throws IOException {
        Path root = Files.createDirectories(dir.resolve("store"));
        Path outside = Files.createDirectories(dir.resolve("outside"));
        Files.writeString(outside.resolve("x.safetensors"), "secret");
        Files.createSymbolicLink(root.resolve("linked-run"), outside);
        IOException e = assertThrows(IOException.class, () -> SnapshotUris.resolve(root, "linked-run/x.safetensors"));
        assertTrue(e.getMessage().contains("outside the snapshot store"), e.getMessage());
        assertThrows(IOException.class, () -> SnapshotUris.resolve(root, "linked-run/new.safetensors"), "a write through the link too");
        Files.createDirectories(root.resolve("run"));
        Files.createSymbolicLink(root.resolve("run").resolve("link.safetensors"), outside.resolve("x.safetensors"));
        assertThrows(IOException.class, () -> SnapshotUris.resolve(root, "run/link.safetensors"));
        Files.createSymbolicLink(root.resolve("run").resolve("dangling.safetensors"), outside.resolve("gone"));
        assertThrows(IOException.class, () -> SnapshotUris.resolve(root, "run/dangling.safetensors"));
        Files.writeString(root.resolve("run").resolve("real.safetensors"), "x");
        Files.createSymbolicLink(root.resolve("run").resolve("alias.safetensors"), root.resolve("run").resolve("real.safetensors"));
        assertEquals(root.toRealPath().resolve("run").resolve("alias.safetensors"), SnapshotUris.resolve(root, "run/alias.safetensors"),
                "a link that stays inside the store resolves (to its own path: readers that refuse links check that themselves)");
    }
}
