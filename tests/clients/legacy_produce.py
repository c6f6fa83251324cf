"""Produce versions 0 to 2 (message formats v0 and v1, before record batches): kafka-python
pinned to an old broker version produces with them, uncompressed and gzip; confluent-kafka reads
the records back (from the record batches the broker converted them to). Format v1 keeps the
producer's timestamps; v0 has none, so the broker's time is used. Usage: legacy_produce.py
BOOTSTRAP. Prints "ok" when everything matched."""

import sys
import time

from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaProducer

bootstrap = sys.argv[1]
# An hour ago: within retention (seven days), so the broker keeps the records.
base = int(time.time() * 1000) - 3_600_000
start = int(time.time() * 1000)
records = [(b"k0", b"v0"), (b"k1", None), (None, b"no key")]

for api_version, format_version in [((0, 10, 0), 1), ((0, 9), 0)]:
    for compression in [None, "gzip"]:
        topic = f"legacy-v{format_version}-{compression or 'none'}"
        producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=api_version,
                                 compression_type=compression, acks=1, linger_ms=50)
        for i, (k, v) in enumerate(records):
            kwargs = {"timestamp_ms": base + i} if format_version == 1 else {}
            producer.send(topic, key=k, value=v, partition=0, **kwargs)
        producer.flush(30)
        producer.close()

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "legacy-check",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(records) and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            got.append((m.key(), m.value(), m.timestamp()[1], m.offset()))
        consumer.close()
        if [(k, v) for k, v, _, _ in got] != records:
            sys.exit(f"{topic}: got {got!r}")
        if [o for _, _, _, o in got] != [0, 1, 2]:
            sys.exit(f"{topic}: offsets {got!r}")
        for i, (_, _, ts, _) in enumerate(got):
            if format_version == 1 and ts != base + i:
                sys.exit(f"{topic}: timestamp {ts} for record {i}, sent {base + i}")
            if format_version == 0 and not start - 1000 <= ts <= int(time.time() * 1000) + 1000:
                sys.exit(f"{topic}: timestamp {ts} is not the broker's time")
print("ok")
