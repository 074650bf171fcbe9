package io.guardian.plugin;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.ProducerRecord;
import org.junit.jupiter.api.Test;

class BoundedPublisherTest {
    /** A sink whose send blocks until released, like a producer whose broker is gone. */
    static final class StuckSink implements BoundedPublisher.Sink {
        final CountDownLatch release = new CountDownLatch(1);
        final List<ProducerRecord<byte[], byte[]>> got = new CopyOnWriteArrayList<>();

        @Override
        public void send(ProducerRecord<byte[], byte[]> record, Runnable onError) throws Exception {
            release.await();
            got.add(record);
        }

        @Override
        public void close() {
            release.countDown();
        }
    }

    private static ProducerRecord<byte[], byte[]> rec(int i) {
        return new ProducerRecord<>("t", new byte[] {(byte) i});
    }

    @Test
    void offerNeverBlocksAndCountsDropsWhenTheSinkIsStuck() {
        StuckSink sink = new StuckSink();
        try (BoundedPublisher p = new BoundedPublisher(10, sink, "test")) {
            long start = System.nanoTime();
            int accepted = 0;
            for (int i = 0; i < 1000; i++) {
                if (p.offer(rec(i))) {
                    accepted++;
                }
            }
            long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            // The stuck sender holds at most one batch (up to the capacity) and the queue the rest.
            assertTrue(accepted <= 20, "accepted " + accepted);
            assertTrue(accepted >= 10, "accepted " + accepted);
            assertEquals(1000 - accepted, p.dropped.get());
            assertEquals(1000, p.offered.get());
            // Generous bound: a blocking offer would hang for ever, not take a few ms longer.
            assertTrue(tookMs < 5000, "offer blocked for " + tookMs + " ms");
        }
    }

    @Test
    void deliversInOrderWhenTheSinkKeepsUp() throws Exception {
        StuckSink sink = new StuckSink();
        sink.release.countDown();
        try (BoundedPublisher p = new BoundedPublisher(100, sink, "test")) {
            for (int i = 0; i < 50; i++) {
                assertTrue(p.offer(rec(i)));
            }
            long deadline = System.currentTimeMillis() + 5000;
            while (sink.got.size() < 50 && System.currentTimeMillis() < deadline) {
                Thread.sleep(10);
            }
            assertEquals(50, sink.got.size());
            for (int i = 0; i < 50; i++) {
                assertEquals(i, sink.got.get(i).value()[0]);
            }
            assertEquals(0, p.dropped.get());
        }
    }

    @Test
    void sinkExceptionsAreCountedNotPropagated() throws Exception {
        BoundedPublisher.Sink failing = new BoundedPublisher.Sink() {
            @Override
            public void send(ProducerRecord<byte[], byte[]> record, Runnable onError) {
                throw new IllegalStateException("topic missing");
            }

            @Override
            public void close() {
            }
        };
        try (BoundedPublisher p = new BoundedPublisher(100, failing, "test")) {
            for (int i = 0; i < 5; i++) {
                p.offer(rec(i));
            }
            long deadline = System.currentTimeMillis() + 5000;
            while (p.sendErrors.get() < 5 && System.currentTimeMillis() < deadline) {
                Thread.sleep(10);
            }
            assertEquals(5, p.sendErrors.get());
            assertFalse(p.offer(rec(9)) && p.dropped.get() > 0);
        }
    }
}
