package dev.curvewatch.schemas;

import org.apache.kafka.common.errors.SerializationException;

/**
 * A record that breaks the Curvewatch contract. It carries a {@link RejectReason} so callers can
 * route it to dead letters without parsing the message, and a message that says what was wrong.
 */
public class InvalidRecordException extends SerializationException {
    private final RejectReason reason;

    public InvalidRecordException(RejectReason reason, String message) {
        super(reason + ": " + message);
        this.reason = reason;
    }

    public InvalidRecordException(RejectReason reason, String message, Throwable cause) {
        super(reason + ": " + message, cause);
        this.reason = reason;
    }

    public RejectReason reason() {
        return reason;
    }
}
