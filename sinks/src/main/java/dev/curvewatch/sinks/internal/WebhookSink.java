package dev.curvewatch.sinks.internal;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;

/**
 * A generic signed webhook: each live alert is POSTed as {@link WebhookPayload} JSON with the
 * {@link Signature} headers and {@code X-Curvewatch-Delivery} (the alert event's id, the same on
 * every retry). A 2xx answer delivers it; anything else (or no answer) is retried after
 * {@code backoffMs}, doubled each time up to 30 s, {@code attempts} tries in all; after the last, the
 * alert is a dead letter ({@code DELIVERY_FAILED}, with the last answer). A full queue makes its
 * oldest alert a dead letter at once. Alerts read at start from before it (history) are not sent.
 */
public final class WebhookSink extends HttpSink {
    private static final Logger LOG = LoggerFactory.getLogger(WebhookSink.class);
    private static final long MAX_BACKOFF_MS = 30_000;

    private final byte[] secret;
    private final String dashboardUrl;
    private final int attempts;
    private final long backoffMs;
    private final BiConsumer<Delivery, String> deadLetter;
    private final BlockingQueue<Delivery> queue;
    private final Thread thread;
    private volatile boolean stop;

    /** @param deadLetter called with the delivery and why it failed for good */
    public WebhookSink(URI url, byte[] secret, String dashboardUrl, int attempts, long backoffMs, long timeoutMs, int queueMax,
                       BiConsumer<Delivery, String> deadLetter) {
        super(url, timeoutMs);
        this.secret = secret.clone();
        this.dashboardUrl = dashboardUrl;
        this.attempts = attempts;
        this.backoffMs = backoffMs;
        this.deadLetter = deadLetter;
        this.queue = new ArrayBlockingQueue<>(queueMax);
        this.thread = new Thread(this::run, "curvewatch-sink-webhook");
        thread.setDaemon(true);
        thread.start();
    }

    @Override
    public void offer(Delivery d, boolean live) {
        if (!live) {
            return;
        }
        while (!queue.offer(d)) {
            Delivery oldest = queue.poll();
            if (oldest != null) {
                fail(oldest, "the webhook queue was full (" + queue.remainingCapacity() + " free): dropped to make room");
            }
        }
    }

    private void run() {
        while (!stop) {
            try {
                Delivery d = queue.poll(200, TimeUnit.MILLISECONDS);
                if (d != null) {
                    deliver(d);
                }
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private void deliver(Delivery d) throws InterruptedException {
        byte[] body = WebhookPayload.body(d.alert(), dashboardUrl);
        String last = "";
        long wait = backoffMs;
        for (int attempt = 1; attempt <= attempts && !stop; attempt++) {
            String ts = Long.toString(System.currentTimeMillis());
            try {
                HttpResponse<String> r = send(jsonPost()
                        .header(Signature.TIMESTAMP_HEADER, ts)
                        .header(Signature.HEADER, Signature.sign(secret, ts, body))
                        .header("X-Curvewatch-Delivery", d.alert().getId())
                        .header("X-Curvewatch-Attempt", Integer.toString(attempt)), HttpRequest.BodyPublishers.ofByteArray(body));
                if (accepted(r)) {
                    countDelivered(1);
                    return;
                }
                last = "HTTP " + r.statusCode();
            } catch (java.io.IOException e) {
                last = e.toString();
            }
            LOG.warn("webhook {}: attempt {} of {} for alert {} failed: {}", url, attempt, attempts, d.alert().getId(), last);
            if (attempt < attempts) {
                Thread.sleep(wait);
                wait = Math.min(MAX_BACKOFF_MS, wait * 2);
            }
        }
        fail(d, "webhook " + url + " did not take alert " + d.alert().getId() + " after " + attempts + " attempts: " + last);
    }

    private void fail(Delivery d, String why) {
        countFailed(1);
        deadLetter.accept(d, why);
    }

    @Override
    public void close() {
        stop = true;
        thread.interrupt();
        try {
            thread.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
