package dev.curvewatch.service.internal;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Tokens from auth.tokens and a token file that is re-read when it changes, failing closed when it cannot be read. */
class BearerTokensTest {

    private static void write(Path file, String text, long mtimeMs) throws Exception {
        Files.writeString(file, text);
        Files.setLastModifiedTime(file, FileTime.fromMillis(mtimeMs));
    }

    @Test
    void aRotatedFileTakesEffectOnReloadAndAnUnreadableOneLeavesOnlyTheInlineTokens(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("tokens");
        write(file, "# ops\nold-token\n\n", 1_000_000);
        BearerTokens t = new BearerTokens(List.of("inline"), file);
        assertTrue(t.match("old-token").isPresent());
        assertTrue(t.match("inline").isPresent());
        assertFalse(t.match("new-token").isPresent());
        assertFalse(t.match("# ops").isPresent(), "comments are not tokens");
        assertFalse(t.reload(), "unchanged file: nothing to do");

        write(file, "new-token\n", 2_000_000); // the leaked old token revoked, a new one issued
        assertTrue(t.reload());
        assertFalse(t.match("old-token").isPresent(), "revoked without a restart");
        assertTrue(t.match("new-token").isPresent());
        assertEquals(2, t.size());

        Files.delete(file);
        assertTrue(t.reload(), "a file that cannot be read drops its tokens");
        assertFalse(t.match("new-token").isPresent());
        assertTrue(t.match("inline").isPresent());
        assertFalse(t.isEmpty());

        write(file, "back\n", 3_000_000);
        assertTrue(t.reload());
        assertTrue(t.match("back").isPresent());
    }

    @Test
    void theRequesterIdIsAStablePrefixOfTheDigestAndNoTokenMeansEmpty() {
        BearerTokens t = new BearerTokens(List.of("a", "b"), null);
        assertEquals(t.match("a"), t.match("a"));
        assertTrue(t.match("a").orElseThrow().name().matches("token-[0-9a-f]{8}"));
        assertFalse(t.match("a").equals(t.match("b")));
        assertFalse(t.reload(), "no file, nothing to reload");
        assertTrue(new BearerTokens(List.of(), null).isEmpty());
        assertThrows(IllegalArgumentException.class, () -> new BearerTokens(List.of(), Path.of("/nonexistent/tokens")),
                "an unreadable file at start is a configuration error");
    }

    @Test
    void scopesComeWithTheTokenAndIncludeTheLowerOnes(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("tokens");
        write(file, "reader read\neditor   EDIT\nboss admin\nold\n", 1_000_000);
        BearerTokens t = new BearerTokens(List.of("inline-reader read"), file);
        assertEquals(BearerTokens.Scope.READ, t.match("reader").orElseThrow().scope());
        assertEquals(BearerTokens.Scope.READ, t.match("inline-reader").orElseThrow().scope());
        assertEquals(BearerTokens.Scope.EDIT, t.match("editor").orElseThrow().scope());
        assertEquals(BearerTokens.Scope.ADMIN, t.match("boss").orElseThrow().scope());
        assertEquals(BearerTokens.Scope.ADMIN, t.match("old").orElseThrow().scope(), "a token without a scope keeps every right it had");
        assertFalse(t.match("reader read").isPresent(), "the scope is not part of the token");
        assertTrue(BearerTokens.Scope.ADMIN.includes(BearerTokens.Scope.EDIT) && BearerTokens.Scope.EDIT.includes(BearerTokens.Scope.READ));
        assertFalse(BearerTokens.Scope.READ.includes(BearerTokens.Scope.EDIT));
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> new BearerTokens(List.of("x write"), null));
        assertTrue(bad.getMessage().contains("read, edit or admin"), bad.getMessage());
        write(file, "reader superuser\n", 2_000_000);
        assertTrue(t.reload(), "a file with a bad scope fails closed, as an unreadable one");
        assertFalse(t.match("reader").isPresent());
        assertTrue(t.match("inline-reader").isPresent());
    }
}
