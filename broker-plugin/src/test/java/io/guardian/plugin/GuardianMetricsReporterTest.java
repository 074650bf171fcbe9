package io.guardian.plugin;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.metrics.Metrics;
import org.apache.kafka.common.metrics.Sensor;
import org.apache.kafka.common.metrics.stats.Rate;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.apache.kafka.common.security.auth.SecurityProtocol;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;
import org.apache.kafka.server.telemetry.ClientTelemetryPayload;
import org.junit.jupiter.api.Test;

import com.yammer.metrics.core.Gauge;
import com.yammer.metrics.core.Histogram;
import com.yammer.metrics.core.Meter;
import com.yammer.metrics.core.MetricName;
import com.yammer.metrics.core.MetricsRegistry;

class GuardianMetricsReporterTest {
    static final class Capture implements BoundedPublisher.Sink {
        final List<ProducerRecord<byte[], byte[]>> got = new CopyOnWriteArrayList<>();

        @Override
        public void send(ProducerRecord<byte[], byte[]> record, Runnable onError) {
            got.add(record);
        }

        @Override
        public void close() {
        }
    }

    private static Map<String, Object> config() {
        Map<String, Object> c = new HashMap<>();
        c.put("guardian.plugin.bootstrap.servers", "127.0.0.1:1");
        c.put("guardian.plugin.interval.ms", "100");
        c.put("guardian.plugin.producer.linger.ms", "7");
        c.put("node.id", "3");
        return c;
    }

    @Test
    void configNeedsABootstrapAndPositiveNumbers() {
        assertThrows(ConfigException.class, () -> new PluginConfig(Map.of()));
        Map<String, Object> bad = config();
        bad.put("guardian.plugin.interval.ms", "0");
        assertThrows(ConfigException.class, () -> new PluginConfig(bad));
        PluginConfig ok = new PluginConfig(config());
        assertEquals("3", ok.brokerId);
        assertEquals("7", ok.producerOverrides.get("linger.ms"));
        assertEquals("guardian.broker-metrics", ok.metricsTopic);
        assertEquals(900_000, ok.maxRecordBytes);   // under Kafka's ~1 MB default record limits
        Map<String, Object> small = config();
        small.put("guardian.plugin.max.record.bytes", "16384");
        assertEquals(16384, new PluginConfig(small).maxRecordBytes);
        small.put("guardian.plugin.max.record.bytes", "-1");
        assertThrows(ConfigException.class, () -> new PluginConfig(small));
    }

    @Test
    void snapshotsCarryQuotaSensorsWithTagsAndSkipOtherGroups() throws Exception {
        GuardianMetricsReporter r = new GuardianMetricsReporter();
        r.configure(config());
        Capture sink = new Capture();
        try (Metrics metrics = new Metrics()) {
            Sensor s = metrics.sensor("produce-tenant-a");
            var quota = metrics.metricName("byte-rate", "Produce", Map.of("user", "tenant-a", "client-id", "w"));
            s.add(quota, new Rate());
            Sensor other = metrics.sensor("other");
            var unrelated = metrics.metricName("x-rate", "some-other-group");
            other.add(unrelated, new Rate());
            s.record(1000);
            other.record(5);
            // What the broker's Metrics does for a registered reporter, minus init()'s real producer.
            r.metricChange(metrics.metric(quota));
            r.metricChange(metrics.metric(unrelated));
            r.start(sink);
            long deadline = System.currentTimeMillis() + 5000;
            while (sink.got.isEmpty() && System.currentTimeMillis() < deadline) {
                Thread.sleep(20);
            }
            r.close();
        }
        assertTrue(!sink.got.isEmpty(), "no snapshot published");
        ProducerRecord<byte[], byte[]> rec = sink.got.get(0);
        assertEquals("guardian.broker-metrics", rec.topic());
        String json = new String(rec.value(), StandardCharsets.UTF_8);
        assertTrue(json.contains("[\"Produce\",\"byte-rate\",{"), json);
        assertTrue(json.contains("\"user\":\"tenant-a\""), json);
        assertTrue(json.contains("\"client-id\":\"w\""), json);
        assertTrue(!json.contains("some-other-group"), json);
        assertTrue(json.contains("\"broker\":\"3\""), json);
    }

    private static MetricName yammerName(String group, String type, String name, String extra) {
        String mbean = group + ":type=" + type + ",name=" + name + (extra.isEmpty() ? "" : "," + extra);
        return new MetricName(group, type, name, extra.isEmpty() ? null : extra, mbean);
    }

    private static <T> Gauge<T> constant(T v) {
        return new Gauge<T>() {
            @Override
            public T value() {
                return v;
            }
        };
    }

    @Test
    void pressureMetricsAreTakenFromTheYammerRegistryAndTheRestIsSkipped() {
        // The MBean names the broker registers (checked on Kafka 4.1.1), in a registry of our own.
        MetricsRegistry registry = new MetricsRegistry();
        try {
            Meter idle = registry.newMeter(yammerName("kafka.server", "KafkaRequestHandlerPool",
                    "RequestHandlerAvgIdlePercent", ""), "percent", TimeUnit.NANOSECONDS);
            idle.mark(750_000_000L);
            registry.newGauge(yammerName("kafka.network", "SocketServer", "NetworkProcessorAvgIdlePercent", ""),
                    constant(0.875));
            registry.newGauge(yammerName("kafka.server", "ReplicaManager", "UnderReplicatedPartitions", ""), constant(2));
            registry.newGauge(yammerName("kafka.server", "ReplicaManager", "PartitionCount", ""), constant(50));
            registry.newGauge(yammerName("kafka.server", "DelayedOperationPurgatory", "PurgatorySize",
                    "delayedOperation=Produce"), constant(3));
            registry.newGauge(yammerName("kafka.server", "DelayedOperationPurgatory", "PurgatorySize",
                    "delayedOperation=Rebalance"), constant(9));
            Histogram queue = registry.newHistogram(yammerName("kafka.network", "RequestMetrics", "RequestQueueTimeMs",
                    "request=Produce"), true);
            for (int i = 1; i <= 1000; i++) {
                queue.update(i < 990 ? 1 : 500);  // 1 % of the requests waited 500 ms
            }
            registry.newHistogram(yammerName("kafka.network", "RequestMetrics", "TotalTimeMs",
                    "request=FetchFollower"), true).update(7);
            registry.newGauge(yammerName("kafka.log", "Log", "Size", "topic=t,partition=0"), constant(1L));

            Snapshot s = new Snapshot(1L, "1");
            GuardianMetricsReporter.addYammer(s, registry.allMetrics());
            String json = new String(s.toJson(), StandardCharsets.UTF_8);
            assertTrue(json.contains("[\"KafkaRequestHandlerPool\",\"RequestHandlerAvgIdlePercent\",{},750000000]"), json);
            assertTrue(json.contains("[\"KafkaRequestHandlerPool\",\"RequestHandlerAvgIdlePercent\",{\"stat\":\"mean_rate\"},"),
                    json);
            assertTrue(json.contains("[\"SocketServer\",\"NetworkProcessorAvgIdlePercent\",{},0.875]"), json);
            assertTrue(json.contains("[\"ReplicaManager\",\"UnderReplicatedPartitions\",{},2]"), json);
            assertTrue(json.contains("[\"DelayedOperationPurgatory\",\"PurgatorySize\",{\"delayedOperation\":\"Produce\"},3]"),
                    json);
            assertTrue(json.contains("[\"RequestMetrics\",\"RequestQueueTimeMs\",{\"request\":\"Produce\",\"stat\":\"p99\"},500"),
                    json);
            for (String skipped : new String[] {"Rebalance", "FetchFollower", "PartitionCount", "\"Log\""}) {
                assertTrue(!json.contains(skipped), skipped + " should not be in " + json);
            }
            assertEquals(6, s.size(), json);
        } finally {
            registry.shutdown();
        }
    }

    @Test
    void telemetryIsForwardedWithIdentityHeaders() throws Exception {
        GuardianMetricsReporter r = new GuardianMetricsReporter();
        r.configure(config());
        Capture sink = new Capture();
        r.start(sink);
        Uuid instance = Uuid.randomUuid();
        byte[] otlp = {1, 2, 3, 4};
        r.clientReceiver().exportMetrics(context(), payload(instance, otlp));
        long deadline = System.currentTimeMillis() + 5000;
        ProducerRecord<byte[], byte[]> rec = null;
        while (rec == null && System.currentTimeMillis() < deadline) {
            rec = sink.got.stream().filter(x -> x.topic().equals("guardian.telemetry")).findFirst().orElse(null);
            Thread.sleep(10);
        }
        r.close();
        assertTrue(rec != null, "telemetry not forwarded");
        assertEquals(4, rec.value().length);
        assertEquals("User:tenant-a", header(rec, "principal"));
        assertEquals("orders-writer", header(rec, "client_id"));
        assertEquals(instance.toString(), header(rec, "client_instance_id"));
        assertEquals("127.0.0.1", header(rec, "client_address"));
    }

    private static String header(ProducerRecord<byte[], byte[]> r, String key) {
        return new String(r.headers().lastHeader(key).value(), StandardCharsets.UTF_8);
    }

    private static AuthorizableRequestContext context() {
        return new AuthorizableRequestContext() {
            public String listenerName() { return "SASL_PLAINTEXT"; }
            public SecurityProtocol securityProtocol() { return SecurityProtocol.SASL_PLAINTEXT; }
            public KafkaPrincipal principal() { return new KafkaPrincipal("User", "tenant-a"); }
            public InetAddress clientAddress() { return InetAddress.getLoopbackAddress(); }
            public int requestType() { return 72; }
            public int requestVersion() { return 0; }
            public String clientId() { return "orders-writer"; }
            public int correlationId() { return 1; }
        };
    }

    private static ClientTelemetryPayload payload(Uuid id, byte[] data) {
        return new ClientTelemetryPayload() {
            public Uuid clientInstanceId() { return id; }
            public boolean isTerminating() { return false; }
            public String contentType() { return "application/x-protobuf"; }
            public ByteBuffer data() { return ByteBuffer.wrap(data); }
        };
    }
}
