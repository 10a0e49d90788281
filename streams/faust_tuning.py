"""Faust's Kafka consumer, tuned where Faust gives no setting.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, hard-coded. A Kafka broker
answers a fetch as soon as any data arrives, so the value only bounds idle polling there; Tansu
(the embedded broker) holds every fetch that finds no data for the whole wait, even when data
arrives meanwhile. Measured on Tansu 0.6.0, one hop producer → consumer: p50 0.632 s with 1,500 ms,
0.016 s with 100 ms. The worker's events reach an alert over two hops (events, then alert-steps),
so this alone made event→alert latency seconds. :func:`limit_fetch_wait` sets the worker's wait
(``SECSTREAM_KAFKA_FETCH_MAX_WAIT_MS``); against Kafka a short wait costs a few empty fetches per
second while idle.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

_ORIGINAL = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_wait_ms = {"value": 1500}


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _ORIGINAL(self, transport)
    consumer._fetch_max_wait_ms = _wait_ms["value"]  # read by AIOKafkaConsumer.start() to build its Fetcher
    return consumer


def limit_fetch_wait(ms: int) -> None:
    """Make Faust's consumers of this process wait at most ``ms`` for data per fetch."""
    _wait_ms["value"] = int(ms)
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
