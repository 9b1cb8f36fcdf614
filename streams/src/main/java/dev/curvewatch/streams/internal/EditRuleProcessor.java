package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.streams.EditRule;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;

import java.util.List;

/** Every published alert against every rule; a match becomes an edit request keyed by run. */
public final class EditRuleProcessor implements Processor<Object, Object, Object, Object> {
    private final List<EditRule> rules;
    private ProcessorContext<Object, Object> ctx;

    public EditRuleProcessor(List<EditRule> rules) {
        this.rules = List.copyOf(rules);
    }

    @Override
    public void init(ProcessorContext<Object, Object> context) {
        this.ctx = context;
    }

    @Override
    public void process(Record<Object, Object> r) {
        Alert a = (Alert) r.value();
        for (EditRule rule : rules) {
            if (rule.matches(a)) {
                EditRequest req = rule.request(a, ctx.currentSystemTimeMs());
                ctx.forward(new Record<Object, Object>(a.getRunId(), req, r.timestamp()), Names.EDIT_REQUESTS_SINK);
            }
        }
    }
}
