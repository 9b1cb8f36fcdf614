package dev.curvewatch.schemas;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.message.SchemaStore;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Writer schemas by their CRC-64-AVRO fingerprint: what single-object encoding needs in place of a
 * schema registry. It knows the current schemas of every generated record, every historical
 * version shipped under {@code curvewatch/avro/history/} (so new readers read old records), and
 * any schema {@link #register registered} at run time (so old readers can read records written
 * with a newer, compatible schema they were handed).
 */
public final class SchemaCatalog implements SchemaStore {
    private static final String HISTORY_INDEX = "/curvewatch/avro/history/index.txt";
    private static final SchemaCatalog DEFAULT = withBuiltins();

    private final Map<Long, Schema> byFingerprint = new ConcurrentHashMap<>();

    /** The process-wide catalogue with the built-in and historical schemas. */
    public static SchemaCatalog defaultCatalog() {
        return DEFAULT;
    }

    /** A fresh catalogue holding only the built-in and historical schemas. */
    public static SchemaCatalog withBuiltins() {
        SchemaCatalog catalog = new SchemaCatalog();
        for (Schema schema : RecordTypes.currentSchemas()) {
            catalog.register(schema);
        }
        catalog.loadHistory();
        return catalog;
    }

    /** Adds a writer schema; returns its fingerprint. */
    public long register(Schema schema) {
        long fingerprint = fingerprint(schema);
        byFingerprint.putIfAbsent(fingerprint, schema);
        return fingerprint;
    }

    @Override
    public Schema findByFingerprint(long fingerprint) {
        return byFingerprint.get(fingerprint);
    }

    public static long fingerprint(Schema schema) {
        return SchemaNormalization.parsingFingerprint64(schema);
    }

    private void loadHistory() {
        try (InputStream index = SchemaCatalog.class.getResourceAsStream(HISTORY_INDEX)) {
            if (index == null) {
                return;
            }
            List<String> names = new String(index.readAllBytes(), StandardCharsets.UTF_8).lines()
                    .map(String::strip).filter(l -> !l.isEmpty() && !l.startsWith("#")).toList();
            for (String name : names) {
                try (InputStream in = SchemaCatalog.class.getResourceAsStream("/curvewatch/avro/history/" + name)) {
                    if (in == null) {
                        throw new IllegalStateException("history index names missing schema " + name);
                    }
                    register(new Schema.Parser().parse(in));
                }
            }
        } catch (IOException e) {
            throw new IllegalStateException("cannot read shipped schema history", e);
        }
    }
}
