package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

import java.nio.charset.StandardCharsets;

/**
 * The run registry: every valid RunInfo on the runs topic, by run id; a tombstone removes the
 * run. A registration that does not decode, fails {@link ContractChecks#checkRun} or sits under
 * another key becomes a dead letter and leaves the registry as it was.
 */
public final class RunRegistryProcessor implements Processor<byte[], byte[], Object, Object> {
    private final AvroDeserializer<RunInfo> decoder = new AvroDeserializer<>(RunInfo.class);
    private final String component;
    private ProcessorContext<Object, Object> ctx;
    private KeyValueStore<String, RunInfo> runs;

    public RunRegistryProcessor(String component) {
        this.component = component;
    }

    @Override
    public void init(ProcessorContext<Object, Object> context) {
        this.ctx = context;
        this.runs = context.getStateStore(Names.RUNS_STORE);
    }

    @Override
    public void process(Record<byte[], byte[]> r) {
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        try {
            ContractChecks.requireId(key, "runs topic key");
            if (r.value() == null) {
                runs.delete(key);
                return;
            }
            RunInfo run = decoder.decode(r.value());
            ContractChecks.checkRun(run);
            if (!run.getRunId().equals(key)) {
                throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "run '" + run.getRunId()
                        + "' published under key '" + key + "'");
            }
            runs.put(key, run);
        } catch (InvalidRecordException e) {
            Rejects.forward(ctx, r, e, component);
        }
    }
}
