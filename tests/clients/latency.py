"""End-to-end latency through a Kafka broker: confluent-kafka produces at a fixed rate, each value
carrying its send time (CLOCK_MONOTONIC, shared by the processes of one machine); a consumer in
another process measures the time to receive each. Usage: latency.py BOOTSTRAP TOPIC RATE
SECONDS. Prints "p50 X ms, p99 Y ms, p99.9 Z ms (N records)"."""

import multiprocessing
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def consume(bootstrap, topic, expected, ready, results):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "latency", "fetch.wait.max.ms": 5,
                         "fetch.min.bytes": 1, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer.poll(0.5)
    ready.set()
    latencies = []
    deadline = time.monotonic() + 120
    while len(latencies) < expected and time.monotonic() < deadline:
        m = consumer.poll(0.1)
        if m is None or m.error():
            continue
        latencies.append(time.monotonic_ns() - int(m.value()))
    consumer.close()
    results.put(latencies)


if __name__ == "__main__":
    bootstrap, topic, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    expected = int(rate * seconds)
    ready, results = multiprocessing.Event(), multiprocessing.Queue()
    reader = multiprocessing.Process(target=consume, args=(bootstrap, topic, expected, ready, results))
    reader.start()
    ready.wait(30)
    # The client's defaults (librdkafka: linger.ms 5), acks=1.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1"})
    start = time.monotonic()
    for i in range(expected):
        pause = start + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        producer.produce(topic, value=str(time.monotonic_ns()), partition=0)
        producer.poll(0)
    producer.flush(30)
    latencies = sorted(results.get(timeout=180))
    reader.join()
    if not latencies:
        sys.exit("no records received")
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6
    print(f"p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms, p99.9 {pick(0.999):.2f} ms ({len(latencies)} records)")
