package dev.curvewatch.sinks.internal;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.HexFormat;

/**
 * The webhook's signature: {@code X-Curvewatch-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>}
 * with {@code X-Curvewatch-Timestamp: <epoch ms>}. Signing the timestamp with the body lets a
 * receiver refuse replays of old deliveries; {@link #verify} is what a receiver does (in constant
 * time).
 */
public final class Signature {
    public static final String HEADER = "X-Curvewatch-Signature";
    public static final String TIMESTAMP_HEADER = "X-Curvewatch-Timestamp";

    private Signature() {
    }

    public static String sign(byte[] secret, String timestamp, byte[] body) {
        return "sha256=" + HexFormat.of().formatHex(hmac(secret, timestamp, body));
    }

    public static boolean verify(byte[] secret, String timestamp, byte[] body, String header) {
        if (header == null || timestamp == null) {
            return false;
        }
        byte[] expected = sign(secret, timestamp, body).getBytes(StandardCharsets.US_ASCII);
        return MessageDigest.isEqual(expected, header.trim().getBytes(StandardCharsets.US_ASCII));
    }

    static byte[] hmac(byte[] secret, String timestamp, byte[] body) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret, "HmacSHA256"));
            mac.update(timestamp.getBytes(StandardCharsets.US_ASCII));
            mac.update((byte) '.');
            return mac.doFinal(body);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
        }
    }
}
