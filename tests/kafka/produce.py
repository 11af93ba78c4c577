"""Test producer for the kafka tier, with kafka-python (PyPI).

    produce.py BROKER TOPIC --create PARTITIONS   makes the topic
    produce.py BROKER TOPIC [--rate N]            sends stdin's lines, each
                                                  `PARTITION<TAB>VALUE`, at
                                                  N records a second (0: at once)

Prints the number of records the broker acknowledged.
"""

import argparse
import sys
import time

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

parser = argparse.ArgumentParser()
parser.add_argument("broker")
parser.add_argument("topic")
parser.add_argument("--create", type=int, default=0)
parser.add_argument("--rate", type=float, default=0)
args = parser.parse_args()

if args.create:
    admin = KafkaAdminClient(bootstrap_servers=args.broker)
    admin.create_topics([NewTopic(args.topic, args.create, 1)])
    admin.close()
    sys.exit(0)

producer = KafkaProducer(bootstrap_servers=args.broker, linger_ms=5, acks=1)
started = time.monotonic()
futures = []
for sent, line in enumerate(sys.stdin):
    partition, value = line.rstrip("\n").split("\t", 1)
    futures.append(producer.send(args.topic, value.encode(), partition=int(partition)))
    if args.rate:
        ahead = (sent + 1) / args.rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
producer.flush()
for future in futures:
    future.get(timeout=30)
print(len(futures))
