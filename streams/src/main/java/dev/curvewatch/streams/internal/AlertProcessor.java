package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.TimestampedKeyValueStore;
import org.apache.kafka.streams.state.ValueAndTimestamp;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Raw alerts from the service become the alert stream people and rules see (DESIGN §4):
 * <ul>
 *   <li><b>validation</b>: undecodable, malformed, mis-keyed alerts and alerts for a run or layer
 *       the registry does not know become dead letters;</li>
 *   <li><b>de-duplication</b>: a fingerprint that is already firing is published again only when
 *       its severity rises; repeats update the stored state (latest step, value, last seen);</li>
 *   <li><b>anti-flapping</b>: a RESOLVED is held for {@code resolveHoldMs} of wall-clock time
 *       and published only if the condition did not fire again meanwhile;</li>
 *   <li><b>routing</b>: published alerts carry headers {@code run}, {@code severity},
 *       {@code status} and {@code layer}, so consumers filter without decoding;</li>
 *   <li><b>guard</b>: every valid FIRING evaluation, repeats and flaps included, goes to the guard
 *       node, whose own limits (cooldown, application, maximum) decide whether to edit.</li>
 * </ul>
 */
public final class AlertProcessor implements Processor<byte[], byte[], Object, Object> {
    private final AvroDeserializer<Alert> decoder = new AvroDeserializer<>(Alert.class);
    private final long resolveHoldMs;
    private final String component;
    private ProcessorContext<Object, Object> ctx;
    private KeyValueStore<String, RunInfo> runs;
    private KeyValueStore<String, Alert> state;
    private TimestampedKeyValueStore<String, Alert> resolving;

    public AlertProcessor(long resolveHoldMs, String component) {
        this.resolveHoldMs = resolveHoldMs;
        this.component = component;
    }

    @Override
    public void init(ProcessorContext<Object, Object> context) {
        this.ctx = context;
        this.runs = context.getStateStore(Names.RUNS_STORE);
        this.state = context.getStateStore(Names.ALERT_STATE_STORE);
        this.resolving = context.getStateStore(Names.ALERT_RESOLVING_STORE);
        long every = Math.max(100, Math.min(1000, resolveHoldMs / 4));
        context.schedule(Duration.ofMillis(every), PunctuationType.WALL_CLOCK_TIME, this::publishHeldResolutions);
    }

    @Override
    public void process(Record<byte[], byte[]> r) {
        Alert a;
        try {
            a = validate(r);
        } catch (InvalidRecordException e) {
            Rejects.forward(ctx, r, e, component);
            return;
        }
        String fp = a.getFingerprint();
        Alert last = state.get(fp);
        boolean firing = last != null && last.getStatus() == AlertStatus.FIRING;
        if (a.getStatus() == AlertStatus.FIRING) {
            // the guard sees every firing evaluation, repeats included: its own limits decide, not the episodes
            ctx.forward(new Record<Object, Object>(fp, a, r.timestamp()), Names.GUARD);
            resolving.delete(fp); // fired again within the hold: the resolution was a flap
            if (!firing) {
                publish(a, r.timestamp());
            } else if (a.getSeverity().ordinal() > last.getSeverity().ordinal()) {
                publish(Alert.newBuilder(a).setFirstSeenMs(last.getFirstSeenMs()).build(), r.timestamp());
            } else {
                state.put(fp, Alert.newBuilder(a).setFirstSeenMs(last.getFirstSeenMs())
                        .setSeverity(last.getSeverity()).build());
            }
        } else if (firing) {
            Alert resolved = Alert.newBuilder(a).setFirstSeenMs(last.getFirstSeenMs()).build();
            if (resolveHoldMs == 0) {
                publish(resolved, r.timestamp());
            } else if (resolving.get(fp) == null) {
                resolving.put(fp, ValueAndTimestamp.make(resolved, ctx.currentSystemTimeMs()));
            }
        }
        // a RESOLVED for a condition that is not firing changes nothing
    }

    private Alert validate(Record<byte[], byte[]> r) {
        if (r.value() == null) {
            throw new InvalidRecordException(RejectReason.TRUNCATED, "alert record has no value (null)");
        }
        Alert a = decoder.decode(r.value());
        ContractChecks.checkAlert(a);
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        if (!a.getFingerprint().equals(key)) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "alert with fingerprint '" + a.getFingerprint()
                    + "' published under key '" + key + "'");
        }
        RunInfo run = runs.get(a.getRunId());
        if (run == null) {
            throw new InvalidRecordException(RejectReason.UNKNOWN_RUN, "alert for run '" + a.getRunId()
                    + "', which is not registered on the runs topic");
        }
        if (a.getLayer() != null && run.getLayers().stream().map(LayerInfo::getName).noneMatch(a.getLayer()::equals)) {
            throw new InvalidRecordException(RejectReason.UNKNOWN_LAYER, "alert for layer '" + a.getLayer()
                    + "', which run '" + a.getRunId() + "' does not watch");
        }
        return a;
    }

    private void publishHeldResolutions(long now) {
        List<KeyValue<String, ValueAndTimestamp<Alert>>> due = new ArrayList<>();
        try (KeyValueIterator<String, ValueAndTimestamp<Alert>> it = resolving.all()) {
            while (it.hasNext()) {
                KeyValue<String, ValueAndTimestamp<Alert>> kv = it.next();
                if (kv.value.timestamp() + resolveHoldMs <= now) {
                    due.add(kv);
                }
            }
        }
        for (KeyValue<String, ValueAndTimestamp<Alert>> kv : due) {
            resolving.delete(kv.key);
            publish(kv.value.value(), now);
        }
    }

    private void publish(Alert a, long timestamp) {
        state.put(a.getFingerprint(), a);
        RecordHeaders headers = new RecordHeaders();
        headers.add("run", a.getRunId().getBytes(StandardCharsets.UTF_8));
        headers.add("severity", a.getSeverity().name().getBytes(StandardCharsets.UTF_8));
        headers.add("status", a.getStatus().name().getBytes(StandardCharsets.UTF_8));
        if (a.getLayer() != null) {
            headers.add("layer", a.getLayer().getBytes(StandardCharsets.UTF_8));
        }
        Record<Object, Object> out = new Record<>(a.getFingerprint(), a, timestamp, headers);
        ctx.forward(out, Names.ALERTS_SINK);
    }
}
