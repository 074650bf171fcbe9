package io.guardian.plugin;

import java.io.ByteArrayOutputStream;
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
 * A snapshot larger than a record may be ({@link #toJsonParts}) is written as several such records,
 * each with {@code "part":[i,n]}. Pure: built from plain values so it is tested without a broker.
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

    /** The whole snapshot as one record, however large. */
    byte[] toJson() {
        return toJsonParts(Integer.MAX_VALUE).get(0);
    }

    /**
     * The snapshot as records of at most {@code maxBytes} each where it can be: Kafka's producer and
     * topics refuse records over 1 MB by default, and a broker with 10,000 clients makes a 3.3 MB
     * snapshot. One client's quota sensors (entries tagged with a user or client-id) are each read on
     * their own, so they are what is split: the first record holds every other entry (those the decoder
     * adds up or pairs within a snapshot: sockets, topics, requests, handler idle) and the plugin's
     * counters, then as many client entries as fit; each further record holds client entries only. Every
     * record is a complete version-1 snapshot with the same ts and broker, and, when there are several,
     * {@code "part":[i,n]} (0-based). A record holding a single entry, or the first record's shared entries,
     * may still exceed {@code maxBytes}. One record, as {@link #toJson}, when everything fits.
     */
    List<byte[]> toJsonParts(int maxBytes) {
        // each metrics entry is serialized once; its size decides the split
        List<byte[]> encoded = new ArrayList<>(metrics.size());
        List<byte[]> shared = new ArrayList<>();
        List<byte[]> clients = new ArrayList<>();
        long entryBytes = 0;
        for (Entry e : metrics) {
            StringBuilder b = new StringBuilder(96);
            entry(b, e);
            byte[] one = b.toString().getBytes(StandardCharsets.UTF_8);
            encoded.add(one);
            entryBytes += one.length + 1;
            boolean client = e.tags().containsKey("user") || e.tags().containsKey("client-id");
            (client ? clients : shared).add(one);
        }
        byte[] tailFirst = tail(true);
        byte[] wholeHead = head(List.of(), -1, 1);
        long commas = encoded.isEmpty() ? 0 : 1;   // entryBytes counted one comma too many
        if (wholeHead.length + entryBytes - commas + tailFirst.length <= maxBytes) {
            return List.of(join(wholeHead, encoded, false, tailFirst, 0, encoded.size()));
        }
        // the envelope around the client entries: its size with a part number of the widest kind
        int firstBase = head(shared, 99_999, 99_999).length + tailFirst.length;
        byte[] tailRest = tail(false);
        int restBase = head(List.of(), 99_999, 99_999).length + tailRest.length;
        List<int[]> chunks = new ArrayList<>();   // [from, to) indexes into clients
        int from = 0;
        int size = firstBase;
        for (int i = 0; i < clients.size(); i++) {
            int add = clients.get(i).length + 1;
            // full: close this part (the first one even empty, when its shared entries leave no room)
            if (size + add > maxBytes && (i > from || (chunks.isEmpty() && size > restBase))) {
                chunks.add(new int[] {from, i});
                from = i;
                size = restBase;
            }
            size += add;
        }
        chunks.add(new int[] {from, clients.size()});
        List<byte[]> parts = new ArrayList<>(chunks.size());
        for (int p = 0; p < chunks.size(); p++) {
            boolean first = p == 0;
            byte[] head = head(first ? shared : List.of(), p, chunks.size());
            parts.add(join(head, clients, first && !shared.isEmpty(), first ? tailFirst : tailRest,
                    chunks.get(p)[0], chunks.get(p)[1]));
        }
        return parts;
    }

    /** {@code head}, then {@code entries[from, to)} comma-separated (after a comma when {@code comma}), then {@code tail}. */
    private static byte[] join(byte[] head, List<byte[]> entries, boolean comma, byte[] tail, int from, int to) {
        int size = head.length + tail.length;
        for (int i = from; i < to; i++) {
            size += entries.get(i).length + 1;
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream(size);
        out.writeBytes(head);
        for (int i = from; i < to; i++) {
            if (comma) {
                out.write(',');
            }
            comma = true;
            out.writeBytes(entries.get(i));
        }
        out.writeBytes(tail);
        return out.toByteArray();
    }

    /**
     * A record's JSON up to and including its leading metrics entries (already serialized), the metrics
     * array left open; with {@code "part":[part,parts]} unless {@code part} is negative (a whole snapshot).
     */
    private byte[] head(List<byte[]> leading, int part, int parts) {
        StringBuilder out = new StringBuilder(256);
        out.append("{\"v\":1,\"kind\":\"broker_metrics\",\"ts\":").append(timestampMs).append(",\"broker\":");
        Json.string(out, brokerId);
        if (part >= 0) {
            out.append(",\"part\":[").append(part).append(',').append(parts).append(']');
        }
        out.append(",\"metrics\":[");
        byte[] start = out.toString().getBytes(StandardCharsets.UTF_8);
        return join(start, leading, false, new byte[0], 0, leading.size());
    }

    /** A part's JSON after its metrics entries: the yammer entries and counters in the first, none after. */
    private byte[] tail(boolean first) {
        StringBuilder out = new StringBuilder(first ? 256 + 96 * yammer.size() : 32);
        out.append("],\"yammer\":");
        entries(out, first ? yammer : List.of());
        out.append(",\"plugin\":{");
        if (first) {
            counters(out);
        }
        out.append("}}");
        return out.toString().getBytes(StandardCharsets.UTF_8);
    }

    private void counters(StringBuilder out) {
        boolean first = true;
        for (Map.Entry<String, Long> e : pluginCounters.entrySet()) {
            if (!first) {
                out.append(',');
            }
            first = false;
            Json.string(out, e.getKey());
            out.append(':').append(e.getValue());
        }
    }

    private static void entry(StringBuilder out, Entry e) {
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

    private static void entries(StringBuilder out, List<Entry> entries) {
        out.append('[');
        for (int i = 0; i < entries.size(); i++) {
            if (i > 0) {
                out.append(',');
            }
            entry(out, entries.get(i));
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
