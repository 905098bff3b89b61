"""The Scheduler on its own: a fake adapter (one token per step, no MLX) and a fake clock (aging without
sleeping). Priority order, aging, fairness, queue limits, cancellation at every stage, a failing request
isolated from the rest, the statistics; the adapter registry; and the one-process Engine loop over the fake
adapter."""

from __future__ import annotations

import queue
import types

import pytest

from abstractllm import InvalidParameterError, QueueFullError, UnsupportedFeatureError
from abstractllm.providers.mlx.pipeline import RequestPipeline, Step
from abstractllm.providers.mlx.scheduler import EngineRequest, Scheduler
from abstractllm.providers.worker import CancelToken
from abstractllm.types import GenerationRequest, Message

LOW, NORMAL, HIGH = 0, 1, 2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Channel:
    """Where one request's messages go (the engine's ``emit``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, object]] = []

    def __call__(self, msg: tuple[str, object]) -> None:
        self.messages.append(msg)

    @property
    def text(self) -> str:
        return "".join(m[1].content or "" for m in self.messages if m[0] == "item")

    @property
    def finish(self) -> str | None:
        items = [m[1] for m in self.messages if m[0] == "item"]
        return items[-1].finish_reason if self.done and items else None

    @property
    def done(self) -> bool:
        return bool(self.messages) and self.messages[-1] == ("done", None)

    @property
    def error(self) -> BaseException | None:
        return next((m[1] for m in self.messages if m[0] == "error"), None)


class FakeAdapter:
    """Each admitted request gets one token per step (``<name><n> ``) up to its ``max_tokens``. ``refuse``:
    names it refuses while the batch is not empty; ``bad``: names whose admission raises; ``fail_steps``:
    how many next steps raise; ``on_admit``: called with each request it admits."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self.batch: list[EngineRequest] = []
        self.admitted: list[str] = []
        self.released: list[tuple[str, bool]] = []
        self.produced: dict[str, int] = {}
        self.refuse: set[str] = set()
        self.bad: set[str] = set()
        self.fail_steps = 0
        self.recovered = 0
        self.on_admit = lambda req: None

    def admit(self, req: EngineRequest) -> bool:
        name = req.params["name"]
        if name in self.bad:
            raise InvalidParameterError(f"{name} is bad", param="prompt")
        if name in self.refuse and self.batch:
            return False
        self.batch.append(req)
        self.admitted.append(name)
        self.on_admit(req)
        return True

    def step(self) -> list[tuple[EngineRequest, Step]]:
        if self.fail_steps:
            self.fail_steps -= 1
            raise RuntimeError("the step failed")
        out = []
        for req in self.batch:
            name = req.params["name"]
            n = self.produced[name] = self.produced.get(name, 0) + 1
            last = n >= req.params["max_tokens"]
            out.append((req, Step(text=f"{name}{n} ", token=n, finish_reason="length" if last else None,
                                  prompt_tokens=3)))
        return out

    def release(self, req: EngineRequest, *, failed: bool = False) -> None:
        if req in self.batch:
            self.batch.remove(req)
            self.released.append((req.params["name"], failed))

    def recover(self) -> None:
        self.batch.clear()
        self.recovered += 1


class Harness:
    """A scheduler over a fake adapter and a fake clock; ``submit`` returns the request's channel."""

    def __init__(self, *, capacity: int = 2, max_queue_size: int = 8, aging_s: float = 10.0) -> None:
        self.clock = Clock()
        self.adapter = FakeAdapter(capacity)
        self.ended: list[str] = []
        self.sched = Scheduler(max_queue_size=max_queue_size, capacity=lambda: self.adapter.capacity,
                               clock=self.clock, aging_s=aging_s,
                               on_end=lambda req: self.ended.append(req.params["name"]))
        self.tokens: dict[str, CancelToken] = {}

    def submit(self, name: str, priority: int = NORMAL, max_tokens: int = 1) -> Channel:
        channel = Channel()
        request = GenerationRequest([Message("user", name)], {"name": name, "max_tokens": max_tokens})
        self.tokens[name] = CancelToken()
        self.sched.submit(EngineRequest(request, channel, self.tokens[name], RequestPipeline(model="fake"),
                                        priority=priority))
        return channel

    def turn(self) -> bool:
        return self.sched.turn(self.adapter, self.adapter)

    def drain(self, limit: int = 100) -> None:
        for _ in range(limit):
            if not self.turn() and not self.sched.has_waiting():
                return
        raise AssertionError("the scheduler did not drain")


# ---------------------------------------------------------------------------------------------- order
def test_priority_order_then_arrival_order():
    h = Harness(capacity=1)
    channels = {name: h.submit(name, prio) for name, prio in
                [("low", LOW), ("normal", NORMAL), ("high", HIGH), ("normal2", NORMAL), ("high2", HIGH)]}
    h.drain()
    assert h.adapter.admitted == ["high", "high2", "normal", "normal2", "low"]
    assert all(c.finish == "length" for c in channels.values())
    assert h.ended == h.adapter.admitted  # each ended once, in the order it ran


def test_equal_priorities_are_served_first_come_first_served():
    h = Harness(capacity=2)
    names = [f"r{i}" for i in range(7)]
    for name in names:
        h.submit(name)
    h.drain()
    assert h.adapter.admitted == names


def test_a_waiting_request_gains_one_level_per_aging_period():
    h = Harness(capacity=1, aging_s=10.0)
    h.submit("blocker", max_tokens=3)
    h.turn()  # the blocker holds the batch
    low = h.submit("low", LOW)
    h.clock.advance(25)  # two periods: LOW counts as HIGH now, and it arrived first
    h.submit("high", HIGH)
    req = {r.params["name"]: r for r in h.sched._waiting}
    assert h.sched.effective_priority(req["low"], h.clock()) == HIGH
    assert h.sched.effective_priority(req["high"], h.clock()) == HIGH
    h.drain()
    assert h.adapter.admitted == ["blocker", "low", "high"] and low.finish == "length"


def test_one_aging_period_is_not_enough_to_pass_a_higher_one():
    h = Harness(capacity=1, aging_s=10.0)
    h.submit("blocker", max_tokens=3)
    h.turn()
    h.submit("low", LOW)
    h.clock.advance(19.9)  # one period: LOW counts as NORMAL
    h.submit("high", HIGH)
    h.drain()
    assert h.adapter.admitted == ["blocker", "high", "low"]


def test_a_low_request_is_not_starved_by_a_stream_of_high_ones():
    h = Harness(capacity=1, aging_s=10.0)
    low = h.submit("low", LOW)
    for i in range(60):  # a new high request every second, each one token long
        h.submit(f"high{i}", HIGH)
        h.turn()
        h.clock.advance(1.0)
        if low.done:
            break
    assert low.finish == "length"
    assert h.adapter.admitted.index("low") <= 21  # LOW + 2 levels after 20 s: it came first among equals


# ---------------------------------------------------------------------------------------------- queue limits
def test_a_full_queue_refuses_at_once_and_queues_nothing():
    h = Harness(capacity=1, max_queue_size=1)
    h.submit("running", max_tokens=5)
    h.turn()  # in the batch: no free slot
    h.submit("waiting")
    with pytest.raises(QueueFullError) as info:
        h.submit("refused")
    assert info.value.queue_size == 1 and info.value.retry_after_s >= 1
    assert h.sched.queue_length == 1
    h.drain()
    assert h.adapter.admitted == ["running", "waiting"]
    h.submit("later")  # the provider goes on
    h.drain()
    assert h.adapter.admitted[-1] == "later"


def test_requests_a_free_slot_will_take_do_not_count_as_queued():
    h = Harness(capacity=2, max_queue_size=0)
    h.submit("a", max_tokens=5)
    h.submit("b", max_tokens=5)  # both go to free slots at the next turn
    with pytest.raises(QueueFullError) as info:
        h.submit("c")
    assert info.value.queue_size == 2
    h.turn()
    with pytest.raises(QueueFullError):
        h.submit("c")
    h.tokens["a"].cancel()  # a cancelled request's slot frees at the next step: it counts as free
    h.submit("c")
    h.drain()
    assert h.adapter.admitted == ["a", "b", "c"]


def test_the_batch_size_is_asked_of_the_adapter_each_time():
    h = Harness(capacity=1)
    for name in "abcd":
        h.submit(name, max_tokens=3)
    h.turn()
    assert h.sched.active_count == 1
    h.adapter.capacity = 3  # e.g. update_config(max_batch_size=3)
    h.turn()
    assert h.sched.active_count == 3 and h.adapter.admitted == ["a", "b", "c"]
    h.drain()


# ---------------------------------------------------------------------------------------------- cancellation
def test_cancelled_while_waiting_ends_without_reaching_the_adapter():
    h = Harness(capacity=1)
    h.submit("running", max_tokens=3)
    h.turn()
    waiting = h.submit("waiting")
    h.tokens["waiting"].cancel()
    h.turn()
    assert waiting.finish == "cancelled" and waiting.text == ""
    assert "waiting" not in h.adapter.admitted and h.sched.stats.cancelled == 1
    h.drain()


def test_cancelled_after_admission_before_its_first_token():
    h = Harness(capacity=2)
    h.adapter.on_admit = lambda req: req.params["name"] == "b" and h.tokens["b"].cancel()  # cancelled meanwhile
    a, b = h.submit("a", max_tokens=2), h.submit("b", max_tokens=2)
    h.turn()
    assert b.finish == "cancelled" and b.text == "" and ("b", False) in h.adapter.released
    assert h.adapter.produced == {"a": 1}  # b never stepped
    h.drain()
    assert a.text == "a1 a2 " and a.finish == "length"


def test_cancelled_while_generating_keeps_what_it_had_and_releases_its_cache():
    h = Harness(capacity=2)
    a, b = h.submit("a", max_tokens=10), h.submit("b", max_tokens=3)
    h.turn()
    h.turn()
    h.tokens["a"].cancel()
    h.turn()
    assert a.finish == "cancelled" and a.text == "a1 a2 "
    assert ("a", False) in h.adapter.released  # a normal release: its prompt cache is stored
    h.drain()
    assert b.text == "b1 b2 b3 " and b.finish == "length"
    assert h.sched.stats.cancelled == 1 and h.sched.stats.served == 1


def test_cancelled_after_it_ended_changes_nothing():
    h = Harness()
    a = h.submit("a", max_tokens=1)
    h.drain()
    before = list(a.messages)
    h.tokens["a"].cancel()
    h.submit("b")
    h.drain()
    assert a.messages == before and h.ended == ["a", "b"]


def test_cancelled_while_refused_ends_from_the_queue():
    h = Harness(capacity=2)
    h.adapter.refuse = {"picky"}
    h.submit("running", max_tokens=5)
    h.turn()
    picky = h.submit("picky")
    h.turn()  # refused: it waits
    assert h.sched.queue_length == 1
    h.tokens["picky"].cancel()
    h.turn()
    assert picky.finish == "cancelled" and h.sched.queue_length == 0
    h.drain()


# ---------------------------------------------------------------------------------------------- failures
def test_a_request_the_adapter_rejects_fails_alone():
    h = Harness(capacity=2)
    h.adapter.bad = {"bad"}
    good, bad, other = h.submit("good", max_tokens=2), h.submit("bad"), h.submit("other", max_tokens=2)
    h.drain()
    assert isinstance(bad.error, InvalidParameterError) and not bad.done
    assert good.finish == other.finish == "length" and h.adapter.admitted == ["good", "other"]
    assert h.sched.stats.failed == 1 and h.sched.stats.served == 2 and "bad" in h.ended


def test_a_failed_step_fails_the_batch_and_the_queue_goes_on():
    seen: list[BaseException] = []
    h = Harness(capacity=2)
    h.sched._convert = lambda exc: seen.append(exc) or exc  # the engine converts backend errors here
    a, b, c = h.submit("a", max_tokens=3), h.submit("b", max_tokens=3), h.submit("c", max_tokens=2)
    h.turn()
    h.adapter.fail_steps = 1
    h.turn()
    assert isinstance(a.error, RuntimeError) and isinstance(b.error, RuntimeError) and len(seen) == 2
    assert sorted(h.adapter.released) == [("a", True), ("b", True)] and h.adapter.recovered == 1
    h.drain()
    assert c.text == "c1 c2 " and c.finish == "length" and h.sched.stats.failed == 2


def test_a_refused_request_holds_the_queue_until_the_batch_changes():
    h = Harness(capacity=3)
    h.adapter.refuse = {"picky"}
    h.submit("running", max_tokens=2)
    h.turn()
    h.submit("picky", HIGH)
    h.submit("behind")
    h.turn()
    assert h.adapter.admitted == ["running"]  # admission stopped at the refused request
    h.drain()
    assert h.adapter.admitted == ["running", "picky", "behind"]


# ---------------------------------------------------------------------------------------------- statistics
def test_statistics_follow_the_fake_clock():
    h = Harness(capacity=2)
    h.submit("a", max_tokens=3)
    h.submit("b", max_tokens=3)
    with h.sched.running():
        h.turn()  # both get their first token
        h.clock.advance(0.5)
        h.turn()
        h.clock.advance(2.0)  # a slow step
        h.turn()
    stats = h.sched.stats_dict()
    assert stats["requests_served"] == 2 and stats["total_tokens_generated"] == 6
    assert stats["average_batch_size"] == 2 and stats["max_inter_token_latency"] == pytest.approx(2.0)
    assert h.sched.stats.busy_s == pytest.approx(2.5) and stats["queue_length"] == stats["active_requests"] == 0


# ---------------------------------------------------------------------------------------------- registry
def test_the_registry_chooses_by_kind_and_features(monkeypatch):
    from abstractllm.providers.mlx import registry

    monkeypatch.setattr(registry, "_ENTRIES", list(registry._ENTRIES))
    monkeypatch.setattr(registry, "_FEATURES", dict(registry._FEATURES))
    text = types.SimpleNamespace(kind="text")
    vision = types.SimpleNamespace(kind="vision")
    assert registry.choose_adapter(registry.needs_of(text, {})).name == "text"
    chosen = registry.choose_adapter(registry.needs_of(vision, {}))
    assert chosen.name == "vision" and chosen.then is not None  # the text-only path after load

    registry.register_feature("speculative", lambda config: bool(config.get("draft_model")))
    spec_entry = registry.AdapterEntry("speculative-text", kind="text", provides=frozenset({"speculative"}),
                                       make=lambda spec, config, on_gpu: None)
    registry.register_adapter(spec_entry)
    assert registry.choose_adapter(registry.needs_of(text, {"draft_model": "d"})) is spec_entry
    assert registry.choose_adapter(registry.needs_of(text, {})).name == "text"  # no more than asked for
    with pytest.raises(UnsupportedFeatureError, match="speculative"):
        registry.choose_adapter(registry.needs_of(vision, {"draft_model": "d"}))


# ---------------------------------------------------------------------------------------------- the engine loop
class _FakeModelAdapter(FakeAdapter):
    def reset(self) -> None:
        self.batch.clear()


def test_the_engine_loop_drives_the_scheduler_on_the_worker():
    pytest.importorskip("mlx.core")
    from abstractllm.providers.mlx.engine import Engine
    from abstractllm.providers.worker import SerialWorker

    worker = SerialWorker("test-engine")
    adapter = _FakeModelAdapter(capacity=2)
    loads: list[int] = []
    engine = Engine(worker, model="fake", max_batch_size=2, max_queue_size=4, convert=lambda e: e,
                    adapter_for_run=lambda: loads.append(1) or adapter)
    try:
        outs = []
        for i in range(4):
            out: queue.Queue = queue.Queue()
            request = GenerationRequest([Message("user", "x")], {"name": f"r{i}", "max_tokens": 3})
            engine.submit(request, out.put, CancelToken())
            outs.append(out)
        texts = []
        for out in outs:
            messages = []
            while not messages or messages[-1][0] != "done":
                messages.append(out.get(timeout=30))
            texts.append("".join(m[1].content or "" for m in messages if m[0] == "item"))
        assert texts == [f"r{i}1 r{i}2 r{i}3 " for i in range(4)]
        assert engine.call(lambda: "between steps") == "between steps"
        stats = engine.stats_dict()
        assert stats["requests_served"] == 4 and stats["average_batch_size"] == 2 and loads
        assert engine.capacity() == 2 and engine.queue_length == 0 and engine.active_count == 0
    finally:
        worker.close()
