package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

import java.util.List;
import java.util.Map;

/**
 * The guard node: every validated firing alert from {@code alert-dedup} (repeats included) and
 * every record of guard-decisions go through {@link GuardPolicy}; its decisions go to
 * guard-decisions, its edit requests to edit-requests (key run), its own alerts to alerts.raw
 * (they come back validated and de-duplicated like any other). State per run/layer in the guard
 * store. A guard decision that does not decode or fails its checks is a dead letter.
 */
public final class GuardProcessor implements Processor<Object, Object, Object, Object> {
    private final GuardPolicy policy;
    private final String component;
    private final AvroDeserializer<GuardDecision> decoder = new AvroDeserializer<>(GuardDecision.class);
    private ProcessorContext<Object, Object> ctx;
    private KeyValueStore<String, RunInfo> runs;
    private KeyValueStore<String, String> state;

    public GuardProcessor(GuardPolicy policy, String component) {
        this.policy = policy;
        this.component = component;
    }

    @Override
    public void init(ProcessorContext<Object, Object> context) {
        this.ctx = context;
        this.runs = context.getStateStore(Names.RUNS_STORE);
        this.state = context.getStateStore(Names.GUARD_STATE_STORE);
    }

    @Override
    @SuppressWarnings("unchecked")
    public void process(Record<Object, Object> r) {
        long now = ctx.currentSystemTimeMs();
        if (r.value() instanceof Alert a) {
            RunInfo run = runs.get(a.getRunId());
            List<String> layers = run == null ? List.of() : run.getLayers().stream().map(LayerInfo::getName).toList();
            emit(a.getRunId(), policy.onAlert(a, l -> load(a.getRunId(), l), layers, now), r.timestamp());
            return;
        }
        Record<byte[], byte[]> raw = (Record<byte[], byte[]>) (Record<?, ?>) r;
        GuardDecision d;
        try {
            if (raw.value() == null) {
                throw new InvalidRecordException(dev.curvewatch.schemas.RejectReason.TRUNCATED, "guard decision has no value (null)");
            }
            d = decoder.decode(raw.value());
            ContractChecks.checkGuardDecision(d);
        } catch (InvalidRecordException e) {
            Rejects.forward(ctx, raw, e, component);
            return;
        }
        emit(d.getRunId(), policy.onDecision(d, l -> load(d.getRunId(), l), now), r.timestamp());
    }

    private GuardState load(String run, String layer) {
        return GuardState.decode(state.get(run + "/" + layer));
    }

    private void emit(String run, GuardPolicy.Outcome o, long timestamp) {
        for (Map.Entry<String, GuardState> e : o.states().entrySet()) {
            state.put(run + "/" + e.getKey(), e.getValue().encode());
        }
        for (GuardDecision d : o.decisions()) {
            ctx.forward(new Record<Object, Object>(run, d, timestamp), Names.GUARD_DECISIONS_SINK);
        }
        if (o.request() != null) {
            ctx.forward(new Record<Object, Object>(run, o.request(), timestamp), Names.EDIT_REQUESTS_SINK);
        }
        if (o.alert() != null) {
            ctx.forward(new Record<Object, Object>(o.alert().getFingerprint(), o.alert(), timestamp), Names.GUARD_ALERTS_SINK);
        }
    }
}
