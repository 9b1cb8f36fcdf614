package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.service.SignalPoint;
import io.vertx.core.MultiMap;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import io.vertx.ext.web.handler.StaticHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;
import java.util.Locale;
import java.util.function.Supplier;
import java.util.regex.Pattern;

/**
 * The HTTP API of SERVICE-CONTRACT §5 on Vert.x web: the routes and the JSON endpoints over the
 * in-memory state, /metrics, /health and the static dashboard from the classpath
 * ({@code dashboard/}). Who may call what is {@link Access}'s (scoped Bearer tokens, security
 * headers), the live events {@link LiveEvents}', the guard's endpoints {@link GuardRoutes}', edit and refresh requests {@link EditRoutes}'.
 * Handlers only read state and hand edits to Kafka; they never compute or block.
 */
public final class HttpApi {
    private static final Logger LOG = LoggerFactory.getLogger(HttpApi.class);
    public static final int BODY_LIMIT_BYTES = 64 * 1024;
    static final Pattern SIGNAL_NAME = Pattern.compile("[A-Za-z0-9_.:-]{1,64}");

    /** The answer of /health: 200 when up, 503 otherwise, with every check. */
    public record Health(boolean up, JsonObject checks) {
    }

    private final Vertx vertx;
    private final Registry registry;
    private final Outputs out;
    private final ServiceMetrics metrics;
    private final SnapshotStore store;
    private final Access access;
    private final Supplier<Health> health;
    private final LiveEvents live;
    private final GuardRoutes guard;
    private final EditRoutes edits;

    public HttpApi(Vertx vertx, Registry registry, Outputs out, ServiceMetrics metrics, SnapshotStore store, Access access,
                   GuardWatch guard, Supplier<Health> health, long pingMs, int maxLiveClients) {
        this.vertx = vertx;
        this.registry = registry;
        this.out = out;
        this.metrics = metrics;
        this.store = store;
        this.access = access;
        this.health = health;
        this.live = new LiveEvents(vertx, metrics, pingMs, maxLiveClients);
        this.guard = new GuardRoutes(vertx, registry, guard);
        this.edits = new EditRoutes(vertx, registry, out);
    }

    public int liveClients() {
        return live.clients();
    }

    public Router router() {
        Router r = Router.router(vertx);
        r.route().handler(ctx -> {
            ctx.addHeadersEndHandler(v -> metrics.inc("curvewatch_service_http_requests_total",
                    Integer.toString(ctx.response().getStatusCode())));
            ctx.next();
        });
        r.route().handler(Access::headers);
        r.get("/health").handler(this::health);
        r.get("/metrics").handler(ctx -> ctx.response().putHeader(HttpHeaders.CONTENT_TYPE, ServiceMetrics.contentType()).end(metrics.scrape()));
        // every read under /api needs the read scope when auth.read.required (SSE and WebSocket included)
        r.get("/api/*").handler(access.read());
        r.get("/api/runs").handler(this::runs);
        r.get("/api/runs/:run").handler(this::run);
        r.get("/api/runs/:run/signals").handler(this::signals);
        r.get("/api/runs/:run/scores").handler(this::scores);
        r.get("/api/runs/:run/spectra").handler(this::spectra);
        r.get("/api/runs/:run/snapshots").handler(this::snapshots);
        r.get("/api/alerts").handler(this::alerts);
        r.get("/api/snapshots/:id/file").handler(access.require(BearerTokens.Scope.READ)).handler(this::download);
        // Vert.x orders a route's handlers body -> authentication -> the rest; the 64 KiB limit bounds what an
        // unauthenticated client can make the service buffer
        edits.mount(r, access, body());
        guard.mount(r, access, body());
        r.get("/api/events").handler(live::sse);
        r.get("/api/ws").handler(live::websocket);
        // the dashboard: GET/HEAD only, so a wrong method on an API path is a 405, an unknown path a 404
        StaticHandler dashboard = StaticHandler.create("dashboard").setIndexPage("index.html").setCachingEnabled(false);
        r.route("/dashboard/*").method(HttpMethod.GET).method(HttpMethod.HEAD).handler(dashboard);
        r.route("/*").method(HttpMethod.GET).method(HttpMethod.HEAD).handler(dashboard);
        for (int code : new int[]{400, 401, 403, 404, 405, 413, 415, 500, 503}) {
            r.errorHandler(code, ctx -> errorBody(ctx, code));
        }
        return r;
    }

    private static BodyHandler body() {
        return BodyHandler.create().setBodyLimit(BODY_LIMIT_BYTES).setHandleFileUploads(false).setDeleteUploadedFilesOnEnd(true);
    }

    private void errorBody(RoutingContext ctx, int code) {
        if (ctx.response().ended() || ctx.response().headWritten()) {
            if (!ctx.response().ended()) {
                ctx.response().end();
            }
            return;
        }
        String message = switch (code) {
            case 404 -> "not found: " + ctx.normalizedPath();
            case 405 -> "method " + ctx.request().method() + " not allowed on " + ctx.normalizedPath();
            case 413 -> "request body larger than " + BODY_LIMIT_BYTES + " bytes";
            case 500 -> "internal error";
            default -> ctx.failure() != null && ctx.failure().getMessage() != null ? ctx.failure().getMessage() : "error " + code;
        };
        if (code == 500 && ctx.failure() != null) {
            LOG.error("HTTP {} {} failed", ctx.request().method(), ctx.normalizedPath(), ctx.failure());
        }
        json(ctx, code, Json.error(message));
    }

    // ---- plumbing ----------------------------------------------------------------------------

    static void json(RoutingContext ctx, int status, Object body) {
        String text = body instanceof JsonObject o ? o.encode() : ((JsonArray) body).encode();
        ctx.response().setStatusCode(status).putHeader(HttpHeaders.CONTENT_TYPE, "application/json; charset=utf-8").end(text);
    }

    static void fail(RoutingContext ctx, int status, String message) {
        json(ctx, status, Json.error(message));
    }

    /** A path or query id checked against ContractChecks' syntax before any lookup; null after answering 400. */
    static String id(RoutingContext ctx, String value, String what) {
        try {
            ContractChecks.requireId(value, what);
            return value;
        } catch (InvalidRecordException e) {
            fail(ctx, 400, e.getMessage());
            return null;
        }
    }

    Registry.Run knownRun(RoutingContext ctx) {
        return knownRun(ctx, registry);
    }

    /** The run of the path, checked and looked up; null after answering 400/404. */
    static Registry.Run knownRun(RoutingContext ctx, Registry registry) {
        String run = id(ctx, ctx.pathParam("run"), "run");
        if (run == null) {
            return null;
        }
        Registry.Run r = registry.run(run).orElse(null);
        if (r == null) {
            fail(ctx, 404, "unknown run '" + run + "'");
        }
        return r;
    }

    /** The layer of a per-layer query: ?layer=, or the run's only layer. Null after answering. */
    private LayerState knownLayer(RoutingContext ctx, Registry.Run r) {
        String layer = ctx.queryParams().get("layer");
        if (layer == null) {
            if (r.layers().size() == 1) {
                return r.layers().values().iterator().next();
            }
            fail(ctx, 400, "layer is required: run '" + r.id() + "' has " + r.layers().size() + " layers");
            return null;
        }
        if (id(ctx, layer, "layer") == null) {
            return null;
        }
        LayerState l = r.layers().get(layer);
        if (l == null) {
            fail(ctx, 404, "unknown layer '" + layer + "' of run '" + r.id() + "'");
        }
        return l;
    }

    private static Long longParam(RoutingContext ctx, String name, long dflt, long min, long max) {
        String v = ctx.queryParams().get(name);
        if (v == null) {
            return dflt;
        }
        try {
            long x = Long.parseLong(v.trim());
            if (x < min || x > max) {
                throw new NumberFormatException();
            }
            return x;
        } catch (NumberFormatException e) {
            fail(ctx, 400, name + " must be an integer in [" + min + ", " + max + "], got '" + (v.length() > 40 ? v.substring(0, 40) + "..." : v) + "'");
            return null;
        }
    }

    // ---- read endpoints ---------------------------------------------------------------------

    private void health(RoutingContext ctx) {
        Health h = health.get();
        json(ctx, h.up() ? 200 : 503, new JsonObject().put("status", h.up() ? "UP" : "DOWN").put("checks", h.checks()));
    }

    private void runs(RoutingContext ctx) {
        JsonArray a = new JsonArray();
        for (Registry.Run r : registry.allRuns()) {
            a.add(Json.run(r, registry.firingAlerts(r.id())));
        }
        json(ctx, 200, a);
    }

    private void run(RoutingContext ctx) {
        Registry.Run r = knownRun(ctx);
        if (r != null) {
            json(ctx, 200, Json.runDetail(r, registry.firingAlerts(r.id())));
        }
    }

    private void signals(RoutingContext ctx) {
        Registry.Run r = knownRun(ctx);
        if (r == null) {
            return;
        }
        MultiMap q = ctx.queryParams();
        String layer = q.get("layer");
        if (layer != null && id(ctx, layer, "layer") == null) {
            return;
        }
        String name = q.get("name");
        if (name != null && !SIGNAL_NAME.matcher(name).matches()) {
            fail(ctx, 400, "name must be 1-64 characters of [A-Za-z0-9_.:-]");
            return;
        }
        Long since = longParam(ctx, "since_step", Long.MIN_VALUE, Long.MIN_VALUE, Long.MAX_VALUE);
        if (since == null) {
            return;
        }
        Long limit = longParam(ctx, "limit", 500, 1, 5000);
        if (limit == null) {
            return;
        }
        JsonArray series = new JsonArray();
        registry.history().query(r.id(), layer, name, since, limit.intValue()).forEach((s, points) -> {
            JsonArray pts = new JsonArray();
            for (SignalPoint p : points) {
                pts.add(Json.point(p));
            }
            series.add(new JsonObject().put("layer", s.layer()).put("name", s.name()).put("points", pts));
        });
        json(ctx, 200, new JsonObject().put("run_id", r.id()).put("series", series));
    }

    private void scores(RoutingContext ctx) {
        Registry.Run r = knownRun(ctx);
        if (r == null) {
            return;
        }
        LayerState l = knownLayer(ctx, r);
        if (l == null) {
            return;
        }
        String kindText = ctx.queryParams().get("kind") == null ? "EXACT" : ctx.queryParams().get("kind").toUpperCase(Locale.ROOT);
        if (kindText.equals(ScoreKind.FIRST_ORDER.name())) {
            // it needs captures, which the service does not read: say so rather than answer an empty list
            fail(ctx, 400, "kind FIRST_ORDER is not computed by the service (it needs captures); the trainer computes it "
                    + "(LayerCapture.firstOrderEditScores). Use EXACT or LOSS");
            return;
        }
        ScoreKind kind;
        try {
            kind = ScoreKind.valueOf(kindText);
        } catch (IllegalArgumentException e) {
            fail(ctx, 400, "kind must be EXACT, LOSS or PEAK");
            return;
        }
        Long top = longParam(ctx, "top", 20, 1, LayerState.TOP_SCORES);
        if (top == null) {
            return;
        }
        List<ExampleScore> all = kind == ScoreKind.EXACT ? l.topExact() : kind == ScoreKind.PEAK ? l.topPeak() : l.topLoss();
        List<ExampleScore> some = all.subList(0, (int) Math.min(top, all.size()));
        json(ctx, 200, new JsonObject().put("run_id", r.id()).put("layer", l.layer()).put("kind", kind.name())
                .put("step", l.scoresStep()).put("rho", Json.num(l.scoresRho())).put("top", Json.examples(some)));
    }

    private void spectra(RoutingContext ctx) {
        Registry.Run r = knownRun(ctx);
        if (r == null) {
            return;
        }
        LayerState l = knownLayer(ctx, r);
        if (l == null) {
            return;
        }
        LayerState.Bases b = l.bases();
        if (b == null) {
            fail(ctx, 404, "layer '" + l.layer() + "' has no eigenbasis yet");
            return;
        }
        JsonObject o = new JsonObject().put("run_id", r.id()).put("layer", l.layer()).put("step", b.step()).put("factor_version", b.version());
        put(o, "g", b.g());
        put(o, "a", b.a());
        json(ctx, 200, o);
    }

    private static void put(JsonObject o, String name, Eigenbasis e) {
        int[] idx = Json.spectrumIndices(e.size(), 512);
        JsonArray values = new JsonArray();
        JsonArray index = new JsonArray();
        for (int i : idx) {
            values.add(Json.num(e.value(i)));
            index.add(i);
        }
        o.put(name, values).put(name + "_index", index).put(name + "_size", e.size());
    }

    private void snapshots(RoutingContext ctx) {
        Registry.Run r = knownRun(ctx);
        if (r == null) {
            return;
        }
        JsonArray a = new JsonArray();
        for (SnapshotEvent e : registry.snapshots(r.id())) {
            a.add(Json.snapshot(e));
        }
        json(ctx, 200, a);
    }

    private void alerts(RoutingContext ctx) {
        String run = ctx.queryParams().get("run");
        if (run != null && id(ctx, run, "run") == null) {
            return;
        }
        String statusText = ctx.queryParams().get("status");
        AlertStatus status = null;
        if (statusText != null) {
            try {
                status = AlertStatus.valueOf(statusText.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                fail(ctx, 400, "status must be FIRING or RESOLVED");
                return;
            }
        }
        Long limit = longParam(ctx, "limit", 100, 1, 1000);
        if (limit == null) {
            return;
        }
        JsonArray a = new JsonArray();
        for (Alert x : registry.alerts()) {
            if ((run == null || run.equals(x.getRunId())) && (status == null || status == x.getStatus())) {
                a.add(Json.alert(x));
                if (a.size() >= limit) {
                    break;
                }
            }
        }
        json(ctx, 200, a);
    }

    private void download(RoutingContext ctx) {
        String id = id(ctx, ctx.pathParam("id"), "snapshot id");
        if (id == null) {
            return;
        }
        SnapshotEvent e = registry.snapshotById(id).orElse(null);
        if (e == null) {
            fail(ctx, 404, "unknown snapshot '" + id + "'");
            return;
        }
        if (e.getStatus() != dev.curvewatch.avro.SnapshotStatus.WRITTEN) {
            fail(ctx, 404, "snapshot '" + id + "' was not written: " + e.getReason());
            return;
        }
        var path = store.resolve(e.getUri()).orElse(null);
        if (path == null) {
            fail(ctx, 404, "snapshot '" + id + "' is not in this service's store");
            return;
        }
        ctx.response().putHeader(HttpHeaders.CONTENT_TYPE, "application/octet-stream")
                .putHeader("Content-Disposition", "attachment; filename=\"" + id + ".safetensors\"")
                .putHeader("X-Content-SHA256", e.getSha256())
                .sendFile(path.toString());
    }
}
