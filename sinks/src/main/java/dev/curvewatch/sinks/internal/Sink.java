package dev.curvewatch.sinks.internal;

/**
 * One destination of alerts. {@link #offer} never blocks the consumer: each sink has its own
 * bounded queue and thread, so a slow or dead destination delays only itself.
 */
public interface Sink extends AutoCloseable {
    /** Hands over an alert; {@code live}: read after the start (history only rebuilds a sink's state). */
    void offer(Delivery d, boolean live);

    /** Deliveries that succeeded / failed for good (dead letters). */
    long delivered();

    long failed();

    @Override
    void close();
}
