"""The demo receiver: an endpoint that does what the contract asks of every receiver, with fault knobs.

It is also the example to copy. A receiver should:
1. verify the Standard Webhooks signature (here with the reference `standardwebhooks` package) and
   refuse what does not verify;
2. dedupe on `webhook-id`: the dispatcher and Lambda re-send, so the same event can arrive twice;
3. drop stale events: records can arrive out of order across invocations, and `dispatch-sequence`
   (compared as an integer, per `dispatch-source` + `dispatch-partition-key`) tells which is newer. An older
   event with a `dispatch-redrive` header is not stale: it is a parked record an operator re-sent on purpose
   after what its key delivered since, so it is taken deliberately (a receiver may instead park it on its side);
4. answer 2xx fast; 429/5xx when it wants the event again later; 4xx only for events it will never take.

The knobs make it misbehave the way real endpoints do: slow answers, transient 500s, answers that come
after the dispatcher gave up (the event is still processed: the retry is then a duplicate), a permanent 422
for events marked as poison, and a key outage: 503 for every event of some partition keys (as when the
database shard of some customers is down) while the outage lasts: `outage_seconds` from the first request
after start_key_outage() (so a slow start does not use it up), or until end_key_outage().
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

POISON_FIELD = "poison"  # events with {"poison": true} are refused for good (422)
HOOK_ROUTE = "/hooks/{subscription}"
PARTITION_KEY_HEADER = "dispatch-partition-key"
OUTAGE_STATUS = 503
REDRIVE_HEADER = "dispatch-redrive"  # set on every delivery a redrive re-sent: the time of the redrive


@dataclass(frozen=True)
class FaultKnobs:
    fail_rate: float = 0.0  # fraction of requests answered 500
    timeout_rate: float = 0.0  # fraction answered only after `stall_seconds` (processed all the same)
    latency_ms: float = 0.0  # added to every answer
    stall_seconds: float = 3.0  # longer than the demo subscriptions' request timeout
    outage_keys: frozenset[str] = frozenset()  # partition keys answered 503 while the key outage lasts
    outage_seconds: float | None = None  # how long it lasts from its first request; None: until end_key_outage()


@dataclass
class SubscriptionLedger:
    """What one subscription's endpoint accepted."""

    ordered: bool
    accepted: dict[str, bytes] = field(default_factory=dict)  # webhook-id -> payload
    duplicates: int = 0
    out_of_order: int = 0  # stale: older than an event already seen for its key, and not a redrive
    redriven_older: int = 0  # older than an event already seen for its key, taken on purpose: a redrive
    refused_signature: int = 0
    outage_refusals: int = 0  # events of an outage key answered 503 while the outage lasted
    answers: Counter[int] = field(default_factory=Counter)
    last_sequence: dict[tuple[str, str], int] = field(default_factory=dict)


class DemoReceiver:
    """Serves POST /hooks/<subscription> on 127.0.0.1 from its own thread and event loop."""

    def __init__(self, faults: FaultKnobs = FaultKnobs(), seed: int | None = None) -> None:
        self._verifiers: dict[str, Webhook] = {}
        self.ledgers: dict[str, SubscriptionLedger] = {}
        self.faults = faults
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        # time.monotonic() when the key outage ends (-inf: none started); None: started, its first request sets it
        self._outage_ends: float | None = -math.inf
        self.port = 0

    def register(self, subscription: str, secret: str, *, ordered: bool) -> None:
        """Accept POST /hooks/<subscription>, verified with `secret` (its whsec_ signing secret)."""
        with self._lock:
            self._verifiers[subscription] = Webhook(secret)
            self.ledgers[subscription] = SubscriptionLedger(ordered=ordered)

    def start_key_outage(self) -> None:
        """From now on answer 503 to the events of the outage keys: for `outage_seconds` from the next request, or
        until ended."""
        with self._lock:
            self._outage_ends = math.inf if self.faults.outage_seconds is None else None

    def end_key_outage(self) -> None:
        with self._lock:
            self._outage_ends = -math.inf

    def _in_outage(self, headers: Mapping[str, str]) -> bool:
        """Whether this request falls in the key outage (called once per request: the first one starts its clock)."""
        with self._lock:
            now = time.monotonic()
            if self._outage_ends is None:
                self._outage_ends = now + (self.faults.outage_seconds or 0.0)
            lasting = now < self._outage_ends
        return lasting and headers.get(PARTITION_KEY_HEADER) in self.faults.outage_keys

    def url(self, subscription: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{subscription}"

    def start(self, port: int = 0) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(port, ready), name="demo-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=10):
            raise RuntimeError("the demo receiver did not start")

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._thread.join(timeout=10)

    def _serve(self, port: int, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post(HOOK_ROUTE, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._runner is not None
        assert self._loop is not None
        await self._runner.cleanup()
        self._loop.call_soon(self._loop.stop)

    def totals(self) -> dict[str, int]:
        with self._lock:
            return {
                "accepted": sum(len(ledger.accepted) for ledger in self.ledgers.values()),
                "duplicates": sum(ledger.duplicates for ledger in self.ledgers.values()),
                "out_of_order": sum(ledger.out_of_order for ledger in self.ledgers.values() if ledger.ordered),
                "redriven_older": sum(ledger.redriven_older for ledger in self.ledgers.values()),
                "refused_signature": sum(ledger.refused_signature for ledger in self.ledgers.values()),
                "outage_refusals": sum(ledger.outage_refusals for ledger in self.ledgers.values()),
            }

    async def _receive(self, request: web.Request) -> web.Response:
        name = request.match_info["subscription"]
        with self._lock:
            verifier = self._verifiers.get(name)
        if verifier is None:
            return web.Response(status=404, text=f"no subscription {name}")
        body = await request.read()
        headers = dict(request.headers.items())
        lowered = {key.lower(): value for key, value in headers.items()}
        ledger = self.ledgers[name]
        try:
            verifier.verify(body, lowered)
        except WebhookVerificationError:
            with self._lock:
                ledger.refused_signature += 1
            return self._answer(ledger, 401)
        if self._in_outage(lowered):
            with self._lock:
                ledger.outage_refusals += 1
            return self._answer(ledger, OUTAGE_STATUS)
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        roll = self._random.random()
        if roll < self.faults.fail_rate:
            return self._answer(ledger, 500)
        accepted = not _is_poison(body)
        if accepted:
            # Taken on arrival, so its place in its key's order is where the dispatcher sent it: a late answer
            # is the receiver being slow, not the event arriving late.
            self._record(ledger, lowered, body)
        if roll < self.faults.fail_rate + self.faults.timeout_rate:
            # Answer after the dispatcher gave up; the event is processed all the same, so the retry
            # that follows is a duplicate to absorb.
            await asyncio.sleep(self.faults.stall_seconds)
        return self._answer(ledger, 204 if accepted else 422)

    def _record(self, ledger: SubscriptionLedger, headers: Mapping[str, str], body: bytes) -> None:
        webhook_id = headers["webhook-id"]
        with self._lock:
            if webhook_id in ledger.accepted:
                ledger.duplicates += 1
                return
            ledger.accepted[webhook_id] = body
            key = headers.get(PARTITION_KEY_HEADER)
            sequence = headers.get("dispatch-sequence")
            if key is None or sequence is None:
                return
            order_key = (headers.get("dispatch-source", ""), key)
            newest = ledger.last_sequence.get(order_key)
            if newest is None or int(sequence) >= newest:
                ledger.last_sequence[order_key] = int(sequence)
            elif REDRIVE_HEADER in headers:
                ledger.redriven_older += 1  # replayed on purpose: taken, and the key's newest stays the newest
            else:
                ledger.out_of_order += 1  # a real receiver would drop this stale event

    def _answer(self, ledger: SubscriptionLedger, status: int) -> web.Response:
        with self._lock:
            ledger.answers[status] += 1
        return web.Response(status=status)


def _is_poison(body: bytes) -> bool:
    try:
        document: Any = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get(POISON_FIELD) is True
