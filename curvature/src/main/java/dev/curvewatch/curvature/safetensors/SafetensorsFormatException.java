package dev.curvewatch.curvature.safetensors;

import java.io.IOException;

/** A file that does not follow the safetensors format; the message says what and where. */
public final class SafetensorsFormatException extends IOException {
    public SafetensorsFormatException(String message) {
        super(message);
    }

    public SafetensorsFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
