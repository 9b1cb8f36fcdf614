package dev.curvewatch.schemas;

/** The 10-byte prefix of Avro single-object encoding. */
final class SingleObjectHeader {
    static final int LENGTH = 10;
    static final byte MARKER_0 = (byte) 0xC3;
    static final byte MARKER_1 = 0x01;

    private SingleObjectHeader() {
    }

    static byte[] of(long fingerprint) {
        byte[] header = new byte[LENGTH];
        header[0] = MARKER_0;
        header[1] = MARKER_1;
        for (int i = 0; i < 8; i++) {
            header[2 + i] = (byte) (fingerprint >>> (8 * i));
        }
        return header;
    }

    static long fingerprint(byte[] data) {
        long fp = 0;
        for (int i = 0; i < 8; i++) {
            fp |= (data[2 + i] & 0xFFL) << (8 * i);
        }
        return fp;
    }
}
