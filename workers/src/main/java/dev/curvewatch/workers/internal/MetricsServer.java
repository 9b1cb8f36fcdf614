package dev.curvewatch.workers.internal;

import dev.curvewatch.workers.WorkerMetrics;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.function.Supplier;

/** GET /metrics (Prometheus text) and GET /health (200 UP or 503 with a JSON body) on the JDK's HTTP server. */
public final class MetricsServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * Health answer: 200 when {@code up}, else 503; the body is its JSON ({@link #json()}).
     * {@code lastPollAgeMs} is -1 before the first poll; {@code failure} is the fatal error or null.
     */
    public record Health(boolean up, String phase, String instance, int partitions, int layers, double lagRecords,
                         long lastPollAgeMs, Throwable failure) {
        /** The body, written by Jackson: any error text (newlines, quotes) stays valid JSON. */
        public String json() {
            Map<String, Object> body = new LinkedHashMap<>();
            body.put("status", up ? "UP" : "DOWN");
            body.put("phase", phase);
            body.put("instance", instance);
            body.put("partitions", partitions);
            body.put("layers", layers);
            body.put("lag_records", Math.round(lagRecords));
            body.put("last_poll_age_ms", lastPollAgeMs);
            if (failure != null) {
                body.put("error", failure.toString());
            }
            try {
                return JSON.writeValueAsString(body);
            } catch (JsonProcessingException e) {
                throw new IllegalStateException("strings and numbers always serialize", e);
            }
        }
    }

    private final HttpServer server;

    public MetricsServer(String host, int port, Supplier<String> metrics, Supplier<Health> health) throws IOException {
        server = HttpServer.create(new InetSocketAddress(host, port), 16);
        server.createContext("/metrics", ex -> respond(ex, 200, WorkerMetrics.contentType(), metrics.get()));
        server.createContext("/health", ex -> {
            Health h = health.get();
            respond(ex, h.up() ? 200 : 503, "application/json", h.json());
        });
        server.setExecutor(Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "worker-metrics-http");
            t.setDaemon(true);
            return t;
        }));
        server.start();
    }

    public int port() {
        return server.getAddress().getPort();
    }

    private static void respond(HttpExchange ex, int status, String type, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", type);
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
