package dev.curvewatch.schemas;

import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/** Kafka serdes for every Curvewatch record type (usable by clients and Kafka Streams alike). */
public final class CurvewatchSerdes {
    private CurvewatchSerdes() {
    }

    public static <T extends SpecificRecord> Serde<T> of(Class<T> type) {
        return Serdes.serdeFrom(new AvroSerializer<>(type), new AvroDeserializer<>(type));
    }

    public static <T extends SpecificRecord> Serde<T> of(Class<T> type, SchemaCatalog catalog) {
        return Serdes.serdeFrom(new AvroSerializer<>(type), new AvroDeserializer<>(type, catalog));
    }
}
