package dev.curvewatch.service.internal;

import dev.curvewatch.service.ServiceConfig;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * The Bearer tokens the service accepts, each with its {@link Scope}, held as SHA-256 digests:
 * {@code auth.tokens} plus {@code auth.tokens.file}, which {@link #reload} re-reads when its
 * modification time or size changed, so a token is added or revoked without a restart. A file that
 * can no longer be read (deleted, permissions) fails closed: only {@code auth.tokens} stay valid
 * until it reads again. An entry is {@code <token>} (scope admin, as every token was before scopes)
 * or {@code <token> <scope>} with scope read, edit or admin.
 */
public final class BearerTokens {
    private static final Logger LOG = LoggerFactory.getLogger(BearerTokens.class);

    /** What a token may do; each scope includes the ones before it. */
    public enum Scope {
        /** every GET under /api (runs, signals, scores with sample ids, alerts, guard), SSE, WebSocket, snapshot files */
        READ,
        /** read, plus POST edits and rollbacks */
        EDIT,
        /** edit, plus POST refresh */
        ADMIN;

        public boolean includes(Scope other) {
            return ordinal() >= other.ordinal();
        }
    }

    /** Who presented a token: "token-" and 8 hex digits of its digest, and its scope. */
    public record Principal(String name, Scope scope) {
    }

    private record Entry(byte[] digest, Scope scope) {
    }

    private final List<Entry> inline;
    private final Path file;
    private volatile List<Entry> digests;
    private Object seenVersion;

    /** @throws IllegalArgumentException if the file is set but cannot be read at start (as a bad config) */
    public BearerTokens(List<String> inlineTokens, Path file) {
        this.inline = inlineTokens.stream().map(BearerTokens::entry).toList();
        this.file = file;
        this.digests = inline;
        if (file != null) {
            try {
                load();
            } catch (IOException e) {
                throw new IllegalArgumentException(ServiceConfig.AUTH_TOKENS_FILE + " " + file + " cannot be read: " + e.getMessage(), e);
            }
        }
    }

    public static BearerTokens of(ServiceConfig config) {
        return new BearerTokens(config.authTokensInline(), config.authTokensFile().orElse(null));
    }

    /** No token at all: the authenticated endpoints answer 403. */
    public boolean isEmpty() {
        return digests.isEmpty();
    }

    public int size() {
        return digests.size();
    }

    /**
     * Who presented this token, or empty if it matches none. Compared with every digest in constant
     * time: neither the match position nor the token's length leaks through timing. A token listed
     * twice has the widest of its scopes.
     */
    public Optional<Principal> match(String presented) {
        byte[] d = digest(presented);
        Scope found = null;
        for (Entry known : digests) {
            if (MessageDigest.isEqual(d, known.digest()) && (found == null || known.scope().includes(found))) {
                found = known.scope();
            }
        }
        return found == null ? Optional.empty() : Optional.of(new Principal("token-" + HexFormat.of().formatHex(d).substring(0, 8), found));
    }

    /** {@code <token>} (admin) or {@code <token> <scope>}; a bad scope is a configuration error naming it. */
    static Entry entry(String line) {
        String[] parts = line.trim().split("\\s+");
        if (parts.length > 2) {
            throw new IllegalArgumentException("a token entry is '<token>' or '<token> <read|edit|admin>', got " + parts.length
                    + " words");
        }
        Scope scope = Scope.ADMIN;
        if (parts.length == 2) {
            try {
                scope = Scope.valueOf(parts[1].toUpperCase(java.util.Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("token scope must be read, edit or admin, got '" + parts[1] + "'", e);
            }
        }
        return new Entry(digest(parts[0]), scope);
    }

    /**
     * Re-reads the token file if it changed since the last read (blocking file I/O: call it off the
     * event loop). @return whether the accepted set changed
     */
    public synchronized boolean reload() {
        if (file == null) {
            return false;
        }
        try {
            return load();
        } catch (IOException e) {
            if (seenVersion != null) {
                LOG.error("{} {} cannot be read ({}): only auth.tokens are accepted until it reads again",
                        ServiceConfig.AUTH_TOKENS_FILE, file, e.toString());
            }
            boolean changed = !same(inline, digests);
            digests = inline;
            seenVersion = null;
            return changed;
        }
    }

    /** @return whether the accepted set changed */
    private boolean load() throws IOException {
        BasicFileAttributes a = Files.readAttributes(file, BasicFileAttributes.class);
        Object version = List.of(a.lastModifiedTime(), a.size(), Objects.requireNonNullElse(a.fileKey(), ""));
        if (version.equals(seenVersion)) {
            return false;
        }
        List<Entry> next = new ArrayList<>(inline);
        for (String line : ServiceConfig.readTokenFile(file)) {
            try {
                next.add(entry(line));
            } catch (IllegalArgumentException e) {
                throw new IOException(e.getMessage(), e); // a bad line fails the whole file, as an unreadable one
            }
        }
        boolean changed = !same(next, digests);
        digests = List.copyOf(next);
        if (seenVersion != null) {
            LOG.info("{} {} changed: {} tokens accepted now", ServiceConfig.AUTH_TOKENS_FILE, file, next.size());
        }
        seenVersion = version;
        return changed;
    }

    private static boolean same(List<Entry> x, List<Entry> y) {
        if (x.size() != y.size()) {
            return false;
        }
        for (int i = 0; i < x.size(); i++) {
            if (!java.util.Arrays.equals(x.get(i).digest(), y.get(i).digest()) || x.get(i).scope() != y.get(i).scope()) {
                return false;
            }
        }
        return true;
    }

    private static byte[] digest(String token) {
        return Fingerprints.sha256().digest(token.getBytes(StandardCharsets.UTF_8));
    }
}
