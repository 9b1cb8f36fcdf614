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
 * The Bearer tokens the authenticated endpoints accept, held as SHA-256 digests: {@code auth.tokens}
 * plus {@code auth.tokens.file}, which {@link #reload} re-reads when its modification time or size
 * changed, so a token is added or revoked without a restart. A file that can no longer be read
 * (deleted, permissions) fails closed: only {@code auth.tokens} stay valid until it reads again.
 */
public final class BearerTokens {
    private static final Logger LOG = LoggerFactory.getLogger(BearerTokens.class);

    private final List<byte[]> inline;
    private final Path file;
    private volatile List<byte[]> digests;
    private Object seenVersion;

    /** @throws IllegalArgumentException if the file is set but cannot be read at start (as a bad config) */
    public BearerTokens(List<String> inlineTokens, Path file) {
        this.inline = inlineTokens.stream().map(BearerTokens::digest).toList();
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
     * The requester id of a presented token ("token-" and 8 hex digits of its digest), or empty if
     * it matches none. Compared with every digest in constant time: neither the match position nor
     * the token's length leaks through timing.
     */
    public Optional<String> match(String presented) {
        byte[] d = digest(presented);
        boolean ok = false;
        for (byte[] known : digests) {
            ok |= MessageDigest.isEqual(d, known);
        }
        return ok ? Optional.of("token-" + HexFormat.of().formatHex(d).substring(0, 8)) : Optional.empty();
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
        List<byte[]> next = new ArrayList<>(inline);
        ServiceConfig.readTokenFile(file).stream().map(BearerTokens::digest).forEach(next::add);
        boolean changed = !same(next, digests);
        digests = List.copyOf(next);
        if (seenVersion != null) {
            LOG.info("{} {} changed: {} tokens accepted now", ServiceConfig.AUTH_TOKENS_FILE, file, next.size());
        }
        seenVersion = version;
        return changed;
    }

    private static boolean same(List<byte[]> x, List<byte[]> y) {
        if (x.size() != y.size()) {
            return false;
        }
        for (int i = 0; i < x.size(); i++) {
            if (!java.util.Arrays.equals(x.get(i), y.get(i))) {
                return false;
            }
        }
        return true;
    }

    private static byte[] digest(String token) {
        return Fingerprints.sha256().digest(token.getBytes(StandardCharsets.UTF_8));
    }
}
