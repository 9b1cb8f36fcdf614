package dev.curvewatch.schemas;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.FactorChunk;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.ServiceLayerState;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import org.apache.avro.Schema;
import org.apache.avro.specific.SpecificData;
import org.apache.avro.specific.SpecificRecord;

import java.util.List;

/** The top-level record types that travel on Curvewatch topics. */
public final class RecordTypes {
    /** Every record class a topic value may hold. */
    public static final List<Class<? extends SpecificRecord>> ALL = List.of(
            RunInfo.class, Capture.class, WeightSnapshot.class, FactorChunk.class, FactorManifest.class,
            EditCandidate.class, ProbeResult.class, Signal.class, ExampleScores.class, Alert.class,
            EditRequest.class, SnapshotEvent.class, DeadLetter.class, GuardDecision.class, ServiceLayerState.class);

    static {
        // Avro refuses to instantiate generated classes outside trusted packages (CVE-2024-47561 fix).
        String key = "org.apache.avro.SERIALIZABLE_PACKAGES";
        String packages = System.getProperty(key, "");
        if (!packages.contains("dev.curvewatch.avro")) {
            System.setProperty(key, packages.isEmpty() ? "dev.curvewatch.avro" : packages + ",dev.curvewatch.avro");
        }
    }

    private RecordTypes() {
    }

    public static Schema schemaOf(Class<? extends SpecificRecord> type) {
        return SpecificData.get().getSchema(type);
    }

    static List<Schema> currentSchemas() {
        return ALL.stream().map(RecordTypes::schemaOf).toList();
    }
}
