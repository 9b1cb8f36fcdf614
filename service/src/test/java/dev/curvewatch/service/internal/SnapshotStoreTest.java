package dev.curvewatch.service.internal;

import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import dev.curvewatch.schemas.InvalidRecordException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SnapshotStoreTest {
    private static SafetensorsWriter content(float v) {
        return new SafetensorsWriter().metadata(Map.of("k", "v")).addFloat32("w", new long[]{2}, new float[]{v, v});
    }

    @Test
    void writesAtomicallyWithTheSha256OfTheBytes(@TempDir Path dir) throws Exception {
        SnapshotStore store = new SnapshotStore(dir.resolve("store"));
        SnapshotStore.Stored s = store.write("run-1", "snap-a", content(1));
        assertEquals("run-1/snap-a.safetensors", s.uri());
        byte[] bytes = Files.readAllBytes(s.path());
        assertEquals(bytes.length, s.sizeBytes());
        assertEquals(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)), s.sha256());
        SnapshotStore.Stored again = store.write("run-1", "snap-a", content(2));
        assertFalse(again.sha256().equals(s.sha256()), "rewritten content");
        try (var files = Files.list(s.path().getParent())) {
            assertEquals(List.of("snap-a.safetensors"), files.map(p -> p.getFileName().toString()).toList(), "no temporary files left");
        }
        assertEquals(s.path(), store.resolve("run-1/snap-a.safetensors").orElseThrow());
    }

    @Test
    void idsThatAreNotFileNamesAreRefused(@TempDir Path dir) throws Exception {
        SnapshotStore store = new SnapshotStore(dir.resolve("store"));
        for (String bad : List.of("..", ".", "../x", "a/b", "a\\b", "%2e%2e", "", "x".repeat(129), "/etc")) {
            assertThrows(InvalidRecordException.class, () -> store.pathFor(bad, "snap"), bad);
            assertThrows(InvalidRecordException.class, () -> store.pathFor("run", bad), bad);
        }
        assertTrue(Files.notExists(dir.resolve("x.safetensors")));
    }

    @Test
    void resolveStaysInsideTheStore(@TempDir Path dir) throws Exception {
        Path outside = Files.createDirectories(dir.resolve("outside"));
        Files.writeString(outside.resolve("secret.safetensors"), "secret");
        SnapshotStore store = new SnapshotStore(dir.resolve("store"));
        for (String uri : List.of("../outside/secret.safetensors", "/etc/passwd", "run/../../outside/secret.safetensors",
                "..\\outside\\secret.safetensors", "run/x.txt", "run/sub/x.safetensors", "", "%2e%2e/outside/secret.safetensors")) {
            assertTrue(store.resolve(uri).isEmpty(), uri);
        }
        // a run directory that is a link out of the store: neither written into nor read from
        Files.createSymbolicLink(store.root().resolve("linked"), outside);
        assertThrows(java.io.IOException.class, () -> store.write("linked", "snap", content(1)));
        assertTrue(store.resolve("linked/secret.safetensors").isEmpty());
        // a snapshot file that is a link
        Files.createDirectories(store.root().resolve("run-2"));
        Files.createSymbolicLink(store.root().resolve("run-2/snap.safetensors"), outside.resolve("secret.safetensors"));
        assertTrue(store.resolve("run-2/snap.safetensors").isEmpty());
    }
}
