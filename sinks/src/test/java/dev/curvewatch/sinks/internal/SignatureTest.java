package dev.curvewatch.sinks.internal;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The webhook signature against an independent HMAC-SHA256 (Python's hmac module) and what a receiver checks. */
class SignatureTest {
    private static final byte[] SECRET = "s3cret".getBytes(StandardCharsets.UTF_8);

    @Test
    void matchesPythonsHmacOverTimestampDotBody() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"s3cret",b"1700000000000.{\"a\":1}",hashlib.sha256).hexdigest())'
        assertEquals("sha256=" + PYTHON, Signature.sign(SECRET, "1700000000000", "{\"a\":1}".getBytes(StandardCharsets.UTF_8)));
    }

    private static final String PYTHON = "8a6f992378d0d47b6fcdf1cc8d72e46ba5c789b2c9d3a538be31fe07d598ba6d";

    @Test
    void aReceiverAcceptsOnlyTheExactBodyTimestampAndSecret() {
        byte[] body = "{\"type\":\"alert\"}".getBytes(StandardCharsets.UTF_8);
        String sig = Signature.sign(SECRET, "42", body);
        assertTrue(Signature.verify(SECRET, "42", body, sig));
        assertFalse(Signature.verify(SECRET, "43", body, sig), "another timestamp (a replay made to look fresh)");
        assertFalse(Signature.verify(SECRET, "42", "{\"type\":\"alert \"}".getBytes(StandardCharsets.UTF_8), sig), "another body");
        assertFalse(Signature.verify("other".getBytes(StandardCharsets.UTF_8), "42", body, sig), "another secret");
        assertFalse(Signature.verify(SECRET, "42", body, null));
    }
}
