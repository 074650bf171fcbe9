package io.guardian.plugin;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * Hands records from broker threads to one sender thread through a bounded queue.
 * At most {@code 2 * capacity} records are held: the queue, and one batch the sender has taken.
 *
 * {@link #offer} never blocks and never throws: when the queue is full the record is dropped and
 * counted. Only the sender thread talks to the producer, so a missing topic, an unavailable
 * partition or a slow producer can delay and drop the plugin's data but never a broker thread.
 */
final class BoundedPublisher implements AutoCloseable {
    interface Sink {
        /** Sends one record; may block the sender thread; reports failures through {@code onError}. */
        void send(ProducerRecord<byte[], byte[]> record, Runnable onError) throws Exception;

        void close();
    }

    private final BlockingQueue<ProducerRecord<byte[], byte[]>> queue;
    private final int capacity;
    private final Sink sink;
    private final Thread sender;
    private volatile boolean running = true;

    final AtomicLong offered = new AtomicLong();
    final AtomicLong dropped = new AtomicLong();
    final AtomicLong sent = new AtomicLong();
    final AtomicLong sendErrors = new AtomicLong();

    BoundedPublisher(int capacity, Sink sink, String threadName) {
        this.queue = new ArrayBlockingQueue<>(capacity);
        this.capacity = capacity;
        this.sink = sink;
        this.sender = new Thread(this::drain, threadName);
        this.sender.setDaemon(true);
        this.sender.start();
    }

    boolean offer(ProducerRecord<byte[], byte[]> record) {
        offered.incrementAndGet();
        if (queue.offer(record)) {
            return true;
        }
        dropped.incrementAndGet();
        return false;
    }

    int queued() {
        return queue.size();
    }

    private void drain() {
        List<ProducerRecord<byte[], byte[]>> batch = new ArrayList<>();
        while (running) {
            try {
                ProducerRecord<byte[], byte[]> first = queue.poll(200, TimeUnit.MILLISECONDS);
                if (first == null) {
                    continue;
                }
                batch.add(first);
                // At most one queue's worth in hand: memory stays within twice the capacity.
                queue.drainTo(batch, capacity - 1);
                for (ProducerRecord<byte[], byte[]> r : batch) {
                    try {
                        sink.send(r, sendErrors::incrementAndGet);
                        sent.incrementAndGet();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        return;
                    } catch (Exception e) {
                        sendErrors.incrementAndGet();
                    }
                }
                batch.clear();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    @Override
    public void close() {
        running = false;
        sender.interrupt();
        try {
            sender.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        sink.close();
    }
}
