package dev.curvewatch.service.internal;

import io.vertx.core.Context;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.RoutingContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import static dev.curvewatch.service.internal.HttpApi.fail;
import static dev.curvewatch.service.internal.HttpApi.id;

/**
 * The live events of SERVICE-CONTRACT §5: Server-Sent Events ({@code /api/events}) and WebSocket
 * ({@code /api/ws}) clients, at most {@code live.clients.max} at once, fed by one event-bus
 * consumer that encodes each event once, and one ping timer. Access is checked by the route before
 * these handlers run ({@link Access}).
 */
final class LiveEvents {
    private static final Logger LOG = LoggerFactory.getLogger(LiveEvents.class);

    private final Vertx vertx;
    private final ServiceMetrics metrics;
    private final long pingMs;
    private final int maxLiveClients;
    /** Slots taken by live clients (counted before an upgrade completes, so the bound holds under a burst). */
    private final AtomicInteger liveClients = new AtomicInteger();
    private final ConcurrentHashMap<Long, LiveClient> clients = new ConcurrentHashMap<>();
    private final AtomicLong clientIds = new AtomicLong();

    LiveEvents(Vertx vertx, ServiceMetrics metrics, long pingMs, int maxLiveClients) {
        this.vertx = vertx;
        this.metrics = metrics;
        this.pingMs = pingMs;
        this.maxLiveClients = maxLiveClients;
        metrics.gauge("curvewatch_service_live_clients", liveClients::get);
        startLiveFanOut();
    }

    int clients() {
        return liveClients.get();
    }

    /** The ?run= filter of a live stream: null = every run; answers 400 and returns "" for a bad id. */
    private static String runFilter(RoutingContext ctx) {
        String run = ctx.queryParams().get("run");
        if (run == null) {
            return null;
        }
        return id(ctx, run, "run") == null ? "" : run;
    }

    /**
     * One live client: its run filter, and how it takes an event already encoded for its kind
     * (SSE text or WebSocket frame text). Runs on the client's own context.
     */
    private record LiveClient(String run, boolean sse, Context context, Handler<String> send, Runnable ping) {
    }

    /**
     * The one event-bus consumer of live events: each event is encoded once (as SSE text and as
     * a WebSocket frame, only for the kinds that have clients), then handed to every matching
     * client on its context. One ping timer serves every SSE client.
     */
    private void startLiveFanOut() {
        vertx.eventBus().<JsonObject>localConsumer(Outputs.LIVE_ADDRESS, m -> {
            if (clients.isEmpty()) {
                return;
            }
            JsonObject e = m.body();
            String type = e.getString("type");
            String run = e.getString("run");
            String data = null;
            String sseText = null;
            String wsText = null;
            for (LiveClient c : clients.values()) {
                if (c.run() != null && !c.run().equals(run)) {
                    continue;
                }
                if (data == null) {
                    data = e.getJsonObject("data").encode();
                }
                String text;
                if (c.sse()) {
                    text = sseText != null ? sseText : (sseText = "event: " + type + "\ndata: " + data + "\n\n");
                } else {
                    text = wsText != null ? wsText : (wsText = "{\"type\":" + io.vertx.core.json.Json.encode(type) + ",\"data\":" + data + "}");
                }
                c.context().runOnContext(v -> deliver(c.send(), text));
            }
        });
        vertx.setPeriodic(pingMs, t -> {
            for (LiveClient c : clients.values()) {
                if (c.sse()) {
                    c.context().runOnContext(v -> deliver(x -> c.ping().run(), null));
                }
            }
        });
    }

    /** A write to a client that may have gone since the event was queued for it: nothing to tell anyone then. */
    private static void deliver(Handler<String> send, String text) {
        try {
            send.handle(text);
        } catch (IllegalStateException closed) {
            LOG.debug("live client gone: {}", closed.toString());
        }
    }

    /** Takes a live slot, or answers 503 and returns false: at most {@code live.clients.max} at once. */
    private boolean admitLive(RoutingContext ctx) {
        if (liveClients.incrementAndGet() > maxLiveClients) {
            liveClients.decrementAndGet();
            metrics.inc("curvewatch_service_live_refused_total");
            fail(ctx, 503, "too many live clients (live.clients.max=" + maxLiveClients + "); try again later");
            return false;
        }
        return true;
    }

    /** Server-Sent Events, written by hand (vertx-web has no SSE handler). */
    void sse(RoutingContext ctx) {
        String run = runFilter(ctx);
        if ("".equals(run) || !admitLive(ctx)) {
            return;
        }
        HttpServerResponse resp = ctx.response();
        resp.setChunked(true).setStatusCode(200)
                .putHeader(HttpHeaders.CONTENT_TYPE, "text/event-stream; charset=utf-8")
                .putHeader(HttpHeaders.CACHE_CONTROL, "no-cache")
                .putHeader("X-Accel-Buffering", "no");
        resp.write(": connected\n\n");
        long id = clientIds.incrementAndGet();
        clients.put(id, new LiveClient(run, true, vertx.getOrCreateContext(), text -> {
            if (resp.writeQueueFull()) {
                metrics.inc("curvewatch_service_live_dropped_total");
            } else {
                resp.write(text);
            }
        }, () -> {
            if (!resp.writeQueueFull()) {
                resp.write(": ping\n\n");
            }
        }));
        Handler<Void> closed = v -> {
            if (clients.remove(id) != null) {
                liveClients.decrementAndGet();
            }
        };
        resp.closeHandler(closed);
        resp.exceptionHandler(err -> closed.handle(null));
    }

    void websocket(RoutingContext ctx) {
        String upgrade = ctx.request().getHeader(HttpHeaders.UPGRADE);
        if (upgrade == null || !upgrade.equalsIgnoreCase("websocket")) {
            fail(ctx, 400, "expected a WebSocket upgrade");
            return;
        }
        String run = runFilter(ctx);
        if ("".equals(run) || !admitLive(ctx)) {
            return;
        }
        ctx.request().toWebSocket().onSuccess(ws -> {
            long id = clientIds.incrementAndGet();
            clients.put(id, new LiveClient(run, false, vertx.getOrCreateContext(), text -> {
                if (ws.writeQueueFull()) {
                    metrics.inc("curvewatch_service_live_dropped_total");
                } else {
                    ws.writeTextMessage(text);
                }
            }, () -> { }));
            ws.closeHandler(v -> {
                if (clients.remove(id) != null) {
                    liveClients.decrementAndGet();
                }
            });
            ws.textMessageHandler(msg -> {
                // clients only listen; anything they send is ignored
            });
        }).onFailure(err -> {
            liveClients.decrementAndGet(); // the slot taken for an upgrade that did not happen
            LOG.debug("WebSocket upgrade failed: {}", err.toString());
        });
    }
}
