package dev.curvewatch.sinks.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Prometheus Alertmanager (API v2). Alertmanager expects a sender to re-send what still fires
 * and resolves an alert whose {@code endsAt} passed, so this sink keeps every firing alert (by
 * fingerprint, at most {@link #MAX_FIRING}) and posts them all every {@code resendMs} with
 * {@code endsAt} four periods ahead; a new or changed alert is posted at once; a RESOLVED one is
 * posted with {@code endsAt} = its resolution time and, once Alertmanager took it, forgotten. A
 * failed post is retried at the next period (posting is idempotent for Alertmanager). Everything
 * happens on the sink's own thread.
 */
public final class AlertmanagerSink extends HttpSink {
    private static final Logger LOG = LoggerFactory.getLogger(AlertmanagerSink.class);
    public static final int MAX_FIRING = 10_000;

    private final String dashboardUrl;
    private final long resendMs;
    private final ScheduledExecutorService thread;
    private final Map<String, Alert> firing = new LinkedHashMap<>();
    private final Map<String, Alert> resolving = new LinkedHashMap<>();

    public AlertmanagerSink(URI url, String dashboardUrl, long resendMs, long timeoutMs) {
        super(url, timeoutMs);
        this.dashboardUrl = dashboardUrl;
        this.resendMs = resendMs;
        this.thread = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "curvewatch-sink-alertmanager");
            t.setDaemon(true);
            return t;
        });
        thread.scheduleWithFixedDelay(this::resend, resendMs, resendMs, TimeUnit.MILLISECONDS);
    }

    @Override
    public void offer(Delivery d, boolean live) {
        thread.execute(() -> {
            Alert a = d.alert();
            if (a.getStatus() == AlertStatus.FIRING) {
                firing.put(a.getFingerprint(), a);
                resolving.remove(a.getFingerprint());
                while (firing.size() > MAX_FIRING) {
                    firing.remove(firing.keySet().iterator().next());
                }
            } else {
                firing.remove(a.getFingerprint());
                resolving.put(a.getFingerprint(), a);
                while (resolving.size() > MAX_FIRING) {
                    resolving.remove(resolving.keySet().iterator().next());
                }
            }
            post(List.of(a));
        });
    }

    private void resend() {
        List<Alert> all = new ArrayList<>(firing.values());
        all.addAll(resolving.values());
        if (!all.isEmpty()) {
            post(all);
        }
    }

    private void post(List<Alert> alerts) {
        String body = AlertmanagerPayload.body(alerts, dashboardUrl, System.currentTimeMillis(), 4 * resendMs);
        try {
            HttpResponse<String> r = send(jsonPost(), HttpRequest.BodyPublishers.ofString(body));
            if (accepted(r)) {
                countDelivered(alerts.size());
                for (Alert a : alerts) {
                    if (a.getStatus() == AlertStatus.RESOLVED) {
                        resolving.remove(a.getFingerprint(), a);
                    }
                }
                return;
            }
            LOG.warn("Alertmanager {} answered {} to {} alert(s): {} (re-sent in {} ms)", url, r.statusCode(), alerts.size(),
                    r.body().length() > 300 ? r.body().substring(0, 300) : r.body(), resendMs);
        } catch (java.io.IOException e) {
            LOG.warn("Alertmanager {} unreachable: {} (re-sent in {} ms)", url, e.toString(), resendMs);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        countFailed(alerts.size());
    }

    /** Fingerprints firing now (for tests and the status line). */
    public int firingCount() {
        return firing.size();
    }

    @Override
    public void close() {
        thread.shutdownNow();
    }
}
