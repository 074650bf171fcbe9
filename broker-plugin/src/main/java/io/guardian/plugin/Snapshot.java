package io.guardian.plugin;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One interval's broker metrics as a JSON record (format version 1):
 * <pre>
 * {"v":1,"kind":"broker_metrics","ts":&lt;epoch ms&gt;,"broker":"1",
 *  "metrics":[[group,name,{tags},value],...],      Kafka metrics (quota sensors, group coordinator, sockets)
 *  "yammer":[[type,name,{tags},value],...],        broker registry (per-topic and per-request counters, counts)
 *  "plugin":{"telemetry_forwarded":n,...}}         the plugin's own counters
 * </pre>
 * Pure: built from plain values so it is tested without a broker.
 */
final class Snapshot {
    record Entry(String group, String name, Map<String, String> tags, double value) {
    }

    private final long timestampMs;
    private final String brokerId;
    private final List<Entry> metrics = new ArrayList<>();
    private final List<Entry> yammer = new ArrayList<>();
    private final Map<String, Long> pluginCounters = new LinkedHashMap<>();

    Snapshot(long timestampMs, String brokerId) {
        this.timestampMs = timestampMs;
        this.brokerId = brokerId;
    }

    Snapshot metric(String group, String name, Map<String, String> tags, double value) {
        metrics.add(new Entry(group, name, tags, value));
        return this;
    }

    Snapshot yammer(String type, String name, Map<String, String> tags, double value) {
        yammer.add(new Entry(type, name, tags, value));
        return this;
    }

    Snapshot counter(String name, long value) {
        pluginCounters.put(name, value);
        return this;
    }

    int size() {
        return metrics.size() + yammer.size();
    }

    byte[] toJson() {
        StringBuilder out = new StringBuilder(256 + 96 * size());
        out.append("{\"v\":1,\"kind\":\"broker_metrics\",\"ts\":").append(timestampMs).append(",\"broker\":");
        Json.string(out, brokerId);
        out.append(",\"metrics\":");
        entries(out, metrics);
        out.append(",\"yammer\":");
        entries(out, yammer);
        out.append(",\"plugin\":{");
        boolean first = true;
        for (Map.Entry<String, Long> e : pluginCounters.entrySet()) {
            if (!first) {
                out.append(',');
            }
            first = false;
            Json.string(out, e.getKey());
            out.append(':').append(e.getValue());
        }
        out.append("}}");
        return out.toString().getBytes(StandardCharsets.UTF_8);
    }

    private static void entries(StringBuilder out, List<Entry> entries) {
        out.append('[');
        for (int i = 0; i < entries.size(); i++) {
            Entry e = entries.get(i);
            if (i > 0) {
                out.append(',');
            }
            out.append('[');
            Json.string(out, e.group());
            out.append(',');
            Json.string(out, e.name());
            out.append(',');
            Json.tags(out, e.tags());
            out.append(',');
            Json.number(out, e.value());
            out.append(']');
        }
        out.append(']');
    }

    /** Parses the key properties of a JMX object name such as {@code kafka.server:type=X,name=Y,topic=t}. */
    static Map<String, String> mbeanTags(String mbeanName) {
        Map<String, String> tags = new LinkedHashMap<>();
        int colon = mbeanName.indexOf(':');
        String props = colon < 0 ? mbeanName : mbeanName.substring(colon + 1);
        for (String part : props.split(",")) {
            int eq = part.indexOf('=');
            if (eq > 0) {
                String k = part.substring(0, eq);
                if (!k.equals("type") && !k.equals("name")) {
                    tags.put(k, part.substring(eq + 1));
                }
            }
        }
        return tags;
    }
}
