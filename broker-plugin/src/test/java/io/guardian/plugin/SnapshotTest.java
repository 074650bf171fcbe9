package io.guardian.plugin;

import static org.junit.jupiter.api.Assertions.assertEquals;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
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

    private static Snapshot manyClients(int clients) {
        Snapshot s = new Snapshot(1700000000123L, "1")
                .metric("socket-server-metrics", "connection-creation-rate", Map.of("listener", "SASL"), 2.5)
                .yammer("BrokerTopicMetrics", "BytesInPerSec", Map.of("topic", "t"), 42)
                .counter("send_errors", 1);
        for (int i = 0; i < clients; i++) {
            Map<String, String> tags = new LinkedHashMap<>();
            tags.put("user", "tenant-" + (i % 7));
            tags.put("client-id", "client-\u00e9-" + i);   // non-ASCII: sizes are bytes, not chars
            s.metric("Produce", "byte-rate", tags, i);
        }
        return s;
    }

    @Test
    void aSnapshotThatFitsExactlyIsOneRecordWithoutAPartAndOneByteLessSplitsIt() {
        Snapshot s = manyClients(10);
        byte[] whole = s.toJson();
        List<byte[]> parts = s.toJsonParts(whole.length);
        assertEquals(1, parts.size());
        String json = new String(parts.get(0), StandardCharsets.UTF_8);
        assertEquals(new String(whole, StandardCharsets.UTF_8), json);
        assertTrue(json.startsWith("{\"v\":1,\"kind\":\"broker_metrics\",\"ts\":1700000000123,\"broker\":\"1\","
                + "\"metrics\":[[\"socket-server-metrics\",\"connection-creation-rate\""), json);
        assertTrue(json.endsWith("\"client-\u00e9-9\"},9]],\"yammer\":[[\"BrokerTopicMetrics\",\"BytesInPerSec\","
                + "{\"topic\":\"t\"},42]],\"plugin\":{\"send_errors\":1}}"), json);
        assertEquals(2, s.toJsonParts(whole.length - 1).size());
    }

    @Test
    void aLargeSnapshotIsSplitIntoRecordsUnderTheLimitWithEveryClientOnceAndTheSharedEntriesFirst() {
        Snapshot s = manyClients(2000);
        int whole = s.toJson().length;
        List<byte[]> parts = s.toJsonParts(10_000);
        assertTrue(whole > 100_000, "the test needs a snapshot of many records: " + whole);
        assertTrue(parts.size() >= whole / 10_000, parts.size() + " parts");
        List<String> clients = new ArrayList<>();
        for (int p = 0; p < parts.size(); p++) {
            byte[] bytes = parts.get(p);
            assertTrue(bytes.length <= 10_000, "part " + p + " has " + bytes.length + " bytes");
            String json = new String(bytes, StandardCharsets.UTF_8);
            assertTrue(json.startsWith("{\"v\":1,\"kind\":\"broker_metrics\",\"ts\":1700000000123,\"broker\":\"1\",\"part\":["
                    + p + "," + parts.size() + "],\"metrics\":["), json.substring(0, 120));
            boolean first = p == 0;
            assertEquals(first, json.contains("connection-creation-rate"));
            assertEquals(first, json.contains("BytesInPerSec"));
            assertEquals(first, json.contains("\"send_errors\":1"));
            assertTrue(json.endsWith(first ? "\"plugin\":{\"send_errors\":1}}" : "],\"yammer\":[],\"plugin\":{}}"), json);
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"client-id\":\"([^\"]+)\"").matcher(json);
            while (m.find()) {
                clients.add(m.group(1));
            }
        }
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < 2000; i++) {
            expected.add("client-\u00e9-" + i);
        }
        assertEquals(expected, clients);
    }

    @Test
    void sharedEntriesLargerThanTheLimitGoAloneAndEachClientEntryStillGoesOnce() {
        Snapshot s = manyClients(3);
        List<byte[]> parts = s.toJsonParts(50);
        assertEquals(4, parts.size());   // the shared entries, then one client a record: each over the limit, none lost
        assertTrue(!new String(parts.get(0), StandardCharsets.UTF_8).contains("client-id"));
    }
}
