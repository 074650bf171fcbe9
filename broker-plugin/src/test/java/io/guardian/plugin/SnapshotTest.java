package io.guardian.plugin;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

class SnapshotTest {
    @Test
    void writesVersionedJsonWithNullForNaNAndEscapedStrings() {
        Map<String, String> tags = new LinkedHashMap<>();
        tags.put("user", "tenant-a");
        tags.put("client-id", "we\"ird\nid");
        String json = new String(new Snapshot(1700000000123L, "1")
                .metric("Produce", "byte-rate", tags, 1234.5)
                .metric("Produce", "throttle-time", tags, Double.NaN)
                .yammer("BrokerTopicMetrics", "BytesInPerSec", Map.of("topic", "t"), 42)
                .counter("telemetry_dropped", 3)
                .toJson(), StandardCharsets.UTF_8);
        assertEquals("{\"v\":1,\"kind\":\"broker_metrics\",\"ts\":1700000000123,\"broker\":\"1\","
                + "\"metrics\":[[\"Produce\",\"byte-rate\",{\"user\":\"tenant-a\",\"client-id\":\"we\\\"ird\\nid\"},1234.5],"
                + "[\"Produce\",\"throttle-time\",{\"user\":\"tenant-a\",\"client-id\":\"we\\\"ird\\nid\"},null]],"
                + "\"yammer\":[[\"BrokerTopicMetrics\",\"BytesInPerSec\",{\"topic\":\"t\"},42]],"
                + "\"plugin\":{\"telemetry_dropped\":3}}", json);
    }

    @Test
    void parsesMBeanKeyPropertiesWithoutTypeAndName() {
        assertEquals(Map.of("topic", "tenant-a.orders"),
                Snapshot.mbeanTags("kafka.server:type=BrokerTopicMetrics,name=BytesInPerSec,topic=tenant-a.orders"));
        assertEquals(Map.of("request", "Produce", "version", "11"),
                Snapshot.mbeanTags("kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,version=11"));
        assertEquals(Map.of(), Snapshot.mbeanTags("kafka.controller:type=KafkaController,name=GlobalTopicCount"));
    }
}
