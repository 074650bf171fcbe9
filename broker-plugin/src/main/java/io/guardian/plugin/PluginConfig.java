package io.guardian.plugin;

import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.common.config.ConfigException;

/** The plugin's settings, read from the broker's own configuration under {@code guardian.plugin.}. */
final class PluginConfig {
    static final String PREFIX = "guardian.plugin.";
    static final String PRODUCER_PREFIX = PREFIX + "producer.";

    final String bootstrapServers;
    final String metricsTopic;
    final String telemetryTopic;
    final long intervalMs;
    final int bufferRecords;
    final int maxRecordBytes;
    final Set<String> metricGroups;
    final String brokerId;
    final Map<String, Object> producerOverrides;

    PluginConfig(Map<String, ?> configs) {
        this.bootstrapServers = string(configs, PREFIX + "bootstrap.servers", null);
        if (bootstrapServers == null || bootstrapServers.isBlank()) {
            throw new ConfigException(PREFIX + "bootstrap.servers must name a listener the plugin's producer can use");
        }
        this.metricsTopic = string(configs, PREFIX + "metrics.topic", "guardian.broker-metrics");
        this.telemetryTopic = string(configs, PREFIX + "telemetry.topic", "guardian.telemetry");
        this.intervalMs = positiveLong(configs, PREFIX + "interval.ms", 1000L);
        this.bufferRecords = (int) positiveLong(configs, PREFIX + "buffer.records", 10_000L);
        // a snapshot is split into records of at most this many bytes: under the producer's max.request.size
        // and a topic's max.message.bytes (both about 1 MB by default), with room for the record's overhead
        this.maxRecordBytes = (int) Math.min(Integer.MAX_VALUE, positiveLong(configs, PREFIX + "max.record.bytes", 900_000L));
        this.metricGroups = new LinkedHashSet<>(Arrays.asList(string(configs, PREFIX + "metric.groups",
                "Produce,Fetch,Request,group-coordinator-metrics,socket-server-metrics").split("\\s*,\\s*")));
        this.brokerId = string(configs, "node.id", string(configs, "broker.id", "-1"));
        this.producerOverrides = new HashMap<>();
        for (Map.Entry<String, ?> e : configs.entrySet()) {
            if (e.getKey().startsWith(PRODUCER_PREFIX)) {
                producerOverrides.put(e.getKey().substring(PRODUCER_PREFIX.length()), e.getValue());
            }
        }
    }

    private static String string(Map<String, ?> configs, String key, String dflt) {
        Object v = configs.get(key);
        return v == null ? dflt : v.toString().trim();
    }

    private static long positiveLong(Map<String, ?> configs, String key, long dflt) {
        Object v = configs.get(key);
        if (v == null) {
            return dflt;
        }
        try {
            long parsed = Long.parseLong(v.toString().trim());
            if (parsed <= 0) {
                throw new ConfigException(key, v, "must be a positive integer");
            }
            return parsed;
        } catch (NumberFormatException e) {
            throw new ConfigException(key, v, "must be a positive integer");
        }
    }
}
