package io.guardian.plugin;

import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.metrics.KafkaMetric;
import org.apache.kafka.common.metrics.MetricsReporter;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;
import org.apache.kafka.server.metrics.KafkaYammerMetrics;
import org.apache.kafka.server.telemetry.ClientTelemetry;
import org.apache.kafka.server.telemetry.ClientTelemetryPayload;
import org.apache.kafka.server.telemetry.ClientTelemetryReceiver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.yammer.metrics.core.Gauge;
import com.yammer.metrics.core.Metered;
import com.yammer.metrics.core.Metric;
import com.yammer.metrics.core.Sampling;

/**
 * A broker plugin that puts the guardian's inputs on Kafka without a scraper:
 * <ul>
 * <li>every {@code guardian.plugin.interval.ms} a snapshot of the per-(user, client-id) quota
 * sensors, group-coordinator and socket metrics, the per-topic and per-request counters, and the
 * broker-pressure metrics (handler and network idle, p99 queue and total time, purgatories,
 * under-replicated partitions);</li>
 * <li>each KIP-714 client-telemetry push, forwarded as is (OTLP bytes) with the client's
 * principal, client-id, instance id and address in headers.</li>
 * </ul>
 * It never blocks or fails the broker: broker threads only offer to bounded queues; a missing
 * topic, a full buffer or a slow producer drops data and counts what it dropped.
 *
 * Register with {@code metric.reporters=org.apache.kafka.common.metrics.JmxReporter,io.guardian.plugin.GuardianMetricsReporter}.
 */
public class GuardianMetricsReporter implements MetricsReporter, ClientTelemetry, ClientTelemetryReceiver {
    private static final Logger log = LoggerFactory.getLogger(GuardianMetricsReporter.class);

    private final Map<MetricName, KafkaMetric> metrics = new ConcurrentHashMap<>();
    private PluginConfig config;
    private BoundedPublisher snapshots;
    private BoundedPublisher telemetry;
    private ScheduledExecutorService scheduler;

    @Override
    public void configure(Map<String, ?> configs) {
        this.config = new PluginConfig(configs);
    }

    @Override
    public void init(List<KafkaMetric> initial) {
        for (KafkaMetric m : initial) {
            metricChange(m);
        }
        start(new ProducerSink(producerConfig()));
    }

    /** Starts the publishers and the snapshot schedule on the given sink (tests pass their own). */
    void start(BoundedPublisher.Sink sink) {
        if (snapshots != null) {
            return;
        }
        // Snapshots are few and large; telemetry pushes many and small: separate queues so one
        // cannot starve the other. One sink (one producer) serves both.
        BoundedPublisher.Sink shared = new SharedSink(sink);
        snapshots = new BoundedPublisher(Math.max(2, config.bufferRecords / 100), shared, "guardian-plugin-snapshots");
        telemetry = new BoundedPublisher(config.bufferRecords, shared, "guardian-plugin-telemetry");
        scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "guardian-plugin-scheduler");
            t.setDaemon(true);
            return t;
        });
        scheduler.scheduleAtFixedRate(this::publishSnapshot, config.intervalMs, config.intervalMs, TimeUnit.MILLISECONDS);
        log.info("guardian plugin publishing broker metrics to {} every {} ms and client telemetry to {}",
                config.metricsTopic, config.intervalMs, config.telemetryTopic);
    }

    private Map<String, Object> producerConfig() {
        Map<String, Object> p = new HashMap<>();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, config.bootstrapServers);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "guardian-broker-plugin-" + config.brokerId);
        p.put(ProducerConfig.ACKS_CONFIG, "1");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 50);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
        p.put(ProducerConfig.BUFFER_MEMORY_CONFIG, 8L * 1024 * 1024);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 1000);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 10_000);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 5_000);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.putAll(config.producerOverrides);
        return p;
    }

    @Override
    public void metricChange(KafkaMetric metric) {
        if (config == null || config.metricGroups.contains(metric.metricName().group())) {
            metrics.put(metric.metricName(), metric);
        }
    }

    @Override
    public void metricRemoval(KafkaMetric metric) {
        metrics.remove(metric.metricName());
    }

    Snapshot snapshot(long nowMs) {
        Snapshot s = new Snapshot(nowMs, config.brokerId);
        for (KafkaMetric m : metrics.values()) {
            Object v;
            try {
                v = m.metricValue();
            } catch (RuntimeException e) {
                continue;
            }
            if (v instanceof Number n) {
                MetricName name = m.metricName();
                s.metric(name.group(), name.name(), new LinkedHashMap<>(name.tags()), n.doubleValue());
            }
        }
        addYammer(s);
        s.counter("snapshots_dropped", snapshots == null ? 0 : snapshots.dropped.get())
         .counter("telemetry_forwarded", telemetry == null ? 0 : telemetry.sent.get())
         .counter("telemetry_dropped", telemetry == null ? 0 : telemetry.dropped.get())
         .counter("send_errors", (snapshots == null ? 0 : snapshots.sendErrors.get())
                 + (telemetry == null ? 0 : telemetry.sendErrors.get()));
        return s;
    }

    private static void addYammer(Snapshot s) {
        addYammer(s, KafkaYammerMetrics.defaultRegistry().allMetrics());
    }

    // Broker pressure: the request types and purgatories whose latency and backlog say a broker hurts.
    private static final Set<String> PRESSURE_REQUESTS = Set.of("Produce", "FetchConsumer");
    private static final Set<String> PURGATORIES = Set.of("Produce", "Fetch");
    private static final Set<String> YAMMER_TYPES = Set.of("BrokerTopicMetrics", "RequestMetrics", "KafkaController",
            "KafkaRequestHandlerPool", "SocketServer", "ReplicaManager", "DelayedOperationPurgatory");

    /**
     * The wanted Yammer metrics as snapshot entries: meters as their cumulative count (the decoder
     * takes rates), gauges as their value, histograms as their 99th percentile (tag {@code stat=p99}).
     * The handler-idle meter also sends its lifetime mean rate (tag {@code stat=mean_rate}): it tells
     * how many handler pools mark that one meter (two in KRaft combined mode before Kafka 4.2).
     */
    static void addYammer(Snapshot s, Map<com.yammer.metrics.core.MetricName, Metric> registry) {
        for (Map.Entry<com.yammer.metrics.core.MetricName, Metric> e : registry.entrySet()) {
            com.yammer.metrics.core.MetricName name = e.getKey();
            String type = name.getType();
            String n = name.getName();
            if (!YAMMER_TYPES.contains(type)) {
                continue;  // most of the registry is per-partition: skip it before parsing any name
            }
            Metric metric = e.getValue();
            Map<String, String> tags = Snapshot.mbeanTags(name.getMBeanName());
            boolean counted = ("BrokerTopicMetrics".equals(type) && metric instanceof Metered)
                    || ("RequestMetrics".equals(type) && metric instanceof Metered
                        && ("RequestsPerSec".equals(n) || "ErrorsPerSec".equals(n)))
                    || ("KafkaRequestHandlerPool".equals(type) && "RequestHandlerAvgIdlePercent".equals(n)
                        && metric instanceof Metered);
            boolean gauged = ("KafkaController".equals(type) && n.startsWith("Global"))
                    || ("SocketServer".equals(type) && "NetworkProcessorAvgIdlePercent".equals(n))
                    || ("ReplicaManager".equals(type) && "UnderReplicatedPartitions".equals(n))
                    || ("DelayedOperationPurgatory".equals(type) && "PurgatorySize".equals(n)
                        && PURGATORIES.contains(tags.get("delayedOperation")));
            boolean sampled = "RequestMetrics".equals(type) && metric instanceof Sampling
                    && ("RequestQueueTimeMs".equals(n) || "TotalTimeMs".equals(n))
                    && PRESSURE_REQUESTS.contains(tags.get("request"));
            try {
                if (counted) {
                    Metered m = (Metered) metric;
                    s.yammer(type, n, tags, m.count());
                    if ("KafkaRequestHandlerPool".equals(type)) {
                        s.yammer(type, n, withStat(tags, "mean_rate"), m.meanRate());
                    }
                } else if (gauged && metric instanceof Gauge<?> g && g.value() instanceof Number v) {
                    s.yammer(type, n, tags, v.doubleValue());
                } else if (sampled) {
                    s.yammer(type, n, withStat(tags, "p99"), ((Sampling) metric).getSnapshot().get99thPercentile());
                }
            } catch (RuntimeException ex) {
                // a gauge that throws (its owner is shutting down) is a missing value, not a failed snapshot
            }
        }
    }

    private static Map<String, String> withStat(Map<String, String> tags, String stat) {
        Map<String, String> out = new LinkedHashMap<>(tags);
        out.put("stat", stat);
        return out;
    }

    private void publishSnapshot() {
        try {
            Snapshot s = snapshot(System.currentTimeMillis());
            byte[] key = config.brokerId.getBytes(StandardCharsets.UTF_8);
            for (byte[] part : s.toJsonParts(config.maxRecordBytes)) {
                snapshots.offer(new ProducerRecord<>(config.metricsTopic, null, key, part));
            }
        } catch (RuntimeException e) {
            // A metrics read must never take the plugin (or the broker) down.
            log.debug("guardian plugin snapshot failed", e);
        }
    }

    @Override
    public ClientTelemetryReceiver clientReceiver() {
        return this;
    }

    /** Called on a broker request thread: copy and offer, nothing else. */
    @Override
    public void exportMetrics(AuthorizableRequestContext context, ClientTelemetryPayload payload) {
        if (telemetry == null) {
            return;
        }
        try {
            ByteBuffer data = payload.data().duplicate();
            byte[] bytes = new byte[data.remaining()];
            data.get(bytes);
            String instance = String.valueOf(payload.clientInstanceId());
            ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(config.telemetryTopic, null,
                    instance.getBytes(StandardCharsets.UTF_8), bytes);
            header(record, "principal", String.valueOf(context.principal()));
            header(record, "client_id", context.clientId());
            header(record, "client_instance_id", instance);
            InetAddress addr = context.clientAddress();
            header(record, "client_address", addr == null ? "" : addr.getHostAddress());
            header(record, "listener", context.listenerName());
            header(record, "content_type", payload.contentType());
            header(record, "terminating", Boolean.toString(payload.isTerminating()));
            header(record, "broker", config.brokerId);
            telemetry.offer(record);
        } catch (RuntimeException e) {
            telemetry.dropped.incrementAndGet();
        }
    }

    private static void header(ProducerRecord<byte[], byte[]> r, String key, String value) {
        r.headers().add(new RecordHeader(key, (value == null ? "" : value).getBytes(StandardCharsets.UTF_8)));
    }

    @Override
    public void close() {
        if (scheduler != null) {
            scheduler.shutdownNow();
        }
        if (telemetry != null) {
            telemetry.close();
        }
        if (snapshots != null) {
            snapshots.close();
        }
    }

    /** The real sink: one KafkaProducer; failures are counted by the publisher. */
    static final class ProducerSink implements BoundedPublisher.Sink {
        private final Map<String, Object> producerConfig;
        private KafkaProducer<byte[], byte[]> producer;

        ProducerSink(Map<String, Object> producerConfig) {
            this.producerConfig = producerConfig;
        }

        @Override
        public void send(ProducerRecord<byte[], byte[]> record, Runnable onError) {
            if (producer == null) {
                // Created lazily on the sender thread: the broker's listeners may not be up at init().
                producer = new KafkaProducer<>(producerConfig);
            }
            producer.send(record, (md, e) -> {
                if (e != null) {
                    onError.run();
                }
            });
        }

        @Override
        public void close() {
            if (producer != null) {
                producer.close(java.time.Duration.ofSeconds(2));
            }
        }
    }

    /** Lets two publishers share one sink; closes it once. */
    static final class SharedSink implements BoundedPublisher.Sink {
        private final BoundedPublisher.Sink inner;
        private int open = 2;

        SharedSink(BoundedPublisher.Sink inner) {
            this.inner = inner;
        }

        @Override
        public synchronized void send(ProducerRecord<byte[], byte[]> record, Runnable onError) throws Exception {
            inner.send(record, onError);
        }

        @Override
        public synchronized void close() {
            if (--open == 0) {
                inner.close();
            }
        }
    }
}
