package dev.curvewatch.service.internal;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/** Hashes that identify things across restarts and instances. */
public final class Fingerprints {
    private Fingerprints() {
    }

    /**
     * An alert's fingerprint (SERVICE-CONTRACT §3): the first 32 hex characters of
     * sha256("run|layer|rule"), an empty layer for run-level alerts. Equal for every repeat of a
     * condition, so streams can de-duplicate.
     */
    public static String alert(String runId, String layer, String rule) {
        return sha256Hex(runId + "|" + (layer == null ? "" : layer) + "|" + rule).substring(0, 32);
    }

    /**
     * The snapshot id of an edit request: a function of the run and the idempotency key only, so a
     * request handled again after a crash rewrites the same file instead of adding one.
     */
    public static String snapshot(String runId, String idempotencyKey) {
        return "snap-" + sha256Hex(runId + "|" + idempotencyKey).substring(0, 24);
    }

    public static String sha256Hex(String s) {
        return HexFormat.of().formatHex(sha256().digest(s.getBytes(StandardCharsets.UTF_8)));
    }

    public static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
