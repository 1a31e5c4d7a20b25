"""The streaming engine: many streams, many standing questions, one model.

Each stream is read on its own thread (decode and codec signals, a bounded queue of sampled frames). The engine
loop takes what every stream has ready, runs each stream's pipelines up to their encode requests, packs the
requests of all streams into one ViT call per method, prefills the windows of one method that became due in all
streams as one batch (`prefill_many`; successive windows of one stream go in successive rounds, each needs the KV
of the one before), and answers them in one batch (`ask_many`). Methods run side by side (`--compare`) are never
batched together, so each one's time is measured, not apportioned.

Degradation is explicit and bounded. A file is read as fast as the model takes it (its reader blocks on a full
queue). A live stream cannot wait: while its queue is more than half full the engine skips its due windows
(`windows_skipped`: prefill and answers are most of the cost) and keeps encoding, so caches stay valid; if the
queue still overflows, the reader drops the sample (`samples_dropped`). Memory is bounded by the queues, the
windows and the per-stream ViT caches.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from codecsight.errors import CodecSightError, ConfigError
from codecsight.runtime.methods import Method
from codecsight.prefill.engine import ask_many, prefill_many
from codecsight.runtime.pipeline import Counters, Due, Event, Question, StreamPipeline
from codecsight.signals import DecodeOptions, Sampling, SignalReader, sample_frames
from codecsight.signals.source import NETWORK_SCHEMES, describe
from codecsight.vision.encoder import PrunedViT

_END = object()


@dataclass
class StreamReport:
    """How one stream went: counters per method, and what went wrong if it did."""

    name: str
    source: str
    counters: dict[str, Counters] = field(default_factory=dict)
    samples_dropped: int = 0
    duration: float = 0.0  # seconds of video read
    error: str | None = None
    messages: list[str] = field(default_factory=list)


class _Session:
    """One stream: its reader thread, its queue, and one pipeline per method."""

    def __init__(self, name: str, source, live: bool, sampling: Sampling, options: DecodeOptions, pipelines,
                 queue_size: int):
        self.name, self.source, self.live = name, source, live
        self.sampling, self.options = sampling, options
        self.pipelines: list[StreamPipeline] = pipelines
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.report = StreamReport(name, describe(source))
        self.done = False
        self.thread = threading.Thread(target=self._read, name=f"reader-{name}", daemon=True)
        self.stop = threading.Event()

    def _read(self):
        try:
            with SignalReader(self.source, self.options) as reader:
                for sampled in sample_frames(self.source, self.sampling, reader=reader):
                    if self.stop.is_set():
                        break
                    self.report.duration = sampled.signal.pts
                    if self.live:
                        try:
                            self.queue.put_nowait(sampled)
                        except queue.Full:
                            self.report.samples_dropped += 1
                    else:
                        while not self.stop.is_set():
                            try:
                                self.queue.put(sampled, timeout=0.5)
                                break
                            except queue.Full:
                                continue
                self.report.messages = list(reader.stats.messages)
        except CodecSightError as e:
            self.report.error = str(e)
        except Exception as e:  # never take the service down with one stream
            self.report.error = f"{type(e).__name__}: {e}"
        finally:
            self.queue.put(_END)


class Engine:
    """Runs streams through pipelines of one or more methods (the first is the main one; others run side by side
    on the same sampled frames, e.g. `full` for `--compare full`)."""

    def __init__(self, adapter, methods: list[Method], questions: list[Question], fps: float = 2.0,
                 input_hw: tuple[int, int] | None = None, queue_size: int = 64, batch: int = 8,
                 answer_tokens: int = 8, options: DecodeOptions | None = None):
        if not methods:
            raise ConfigError("at least one method")
        if not questions:
            raise ConfigError("at least one standing question (--ask)")
        if queue_size < 4 or batch < 1:
            raise ConfigError("queue_size must be >= 4 and batch >= 1")
        if not 0 <= answer_tokens <= 256:
            raise ConfigError(f"answer_tokens must be in 0..256 (0: P(Yes) only), got {answer_tokens}")
        self.adapter, self.methods, self.questions = adapter, methods, questions
        self.input_hw = input_hw or adapter.default_input_hw()
        self.sampling = Sampling(fps, self.input_hw)
        self.queue_size, self.batch, self.answer_tokens = queue_size, batch, answer_tokens
        self.options = options or DecodeOptions()
        self.vits = {m.name: PrunedViT(adapter, m.vit_mode, max_streams=1024) for m in methods}
        self.sessions: list[_Session] = []

    def add_stream(self, source, name: str | None = None, live: bool | None = None) -> str:
        name = name or f"s{len(self.sessions)}"
        if any(s.name == name for s in self.sessions):
            raise ConfigError(f"stream name {name!r} is used twice")
        if live is None:
            live = isinstance(source, str) and source.startswith(NETWORK_SCHEMES)
        pipelines = [StreamPipeline(name, self.adapter, m, self.questions, self.input_hw, self.sampling.fps)
                     for m in self.methods]
        self.sessions.append(_Session(name, source, live, self.sampling, self.options, pipelines, self.queue_size))
        return name

    def run(self, on_event: Callable[[Event], None] | None = None,
            on_progress: Callable[[list[StreamReport]], None] | None = None) -> list[StreamReport]:
        """Run every stream to its end (or until interrupted); events go to `on_event` as they happen."""
        for s in self.sessions:
            s.thread.start()
        active = list(self.sessions)
        last_progress = 0.0
        try:
            while active:
                work, ended = [], []  # (session, sampled frame); sessions whose stream ended
                for s in list(active):
                    for _ in range(self.batch):
                        try:
                            item = s.queue.get(timeout=0.05 if not work and s is active[-1] else 0)
                        except queue.Empty:
                            break
                        if item is _END:
                            ended.append(s)
                            active.remove(s)
                            break
                        work.append((s, item))
                    for p in s.pipelines:  # a live stream more than half a queue behind skips its windows
                        p.behind = s.live and s.queue.qsize() > self.queue_size // 2
                for event in self._step(work):
                    if on_event:
                        on_event(event)
                for s in ended:  # after their last samples went through
                    self._finish(s)
                if on_progress and time.monotonic() - last_progress > 1.0:
                    last_progress = time.monotonic()
                    on_progress(self.reports())
        finally:
            for s in self.sessions:
                s.stop.set()
        return self.reports()

    def _step(self, work) -> list[Event]:
        requests = {m.name: [] for m in self.methods}  # method -> [(pipeline, request)]
        due = []
        for s, sampled in work:
            for p in s.pipelines:
                req = p.push(sampled)
                if req is not None:
                    requests[p.method.name].append((p, req))
        for m in self.methods:
            batch = requests[m.name]
            if not batch:
                continue
            self.adapter.synchronize()  # on a GPU, timers must not charge queued work to the next stage
            t0 = time.perf_counter()
            patches = self.vits[m.name].encode([r for _, r in batch], full_grid=m.grid == "cached" or m.linger > 0)
            self.adapter.synchronize()
            share = (time.perf_counter() - t0) / len(batch)
            for (p, _), patch in zip(batch, patches):
                due += p.encoded(patch, share)
        return self._answer(due)

    def _answer(self, due: list[Due]) -> list[Event]:
        events = []
        while due:
            rounds, later, taken = {}, [], set()
            for d in due:  # one window per prefill state a round; one batch per method, so each is timed alone
                (later if id(d.group.prefill) in taken else rounds.setdefault(d.pipeline.method.name, [])).append(d)
                taken.add(id(d.group.prefill))
            for batch in rounds.values():
                events += self._answer_batch(batch)
            due = later
        return events

    def _answer_batch(self, batch: list[Due]) -> list[Event]:
        """Prefill and answer windows of one method together; each window is charged an equal share."""
        events = []
        self.adapter.synchronize()
        t0 = time.perf_counter()
        done = prefill_many([(d.group.prefill, d.window) for d in batch])
        self.adapter.synchronize()
        t1 = time.perf_counter()
        answers = ask_many([(d.group.prefill, kv, d.group.ids) for d, (kv, _) in zip(batch, done)],
                           self.answer_tokens)
        share = ((t1 - t0) / len(batch), (time.perf_counter() - t1) / len(batch))
        for d, (_, stats), a in zip(batch, done, answers):
            events += d.pipeline.answered(d, stats, a, share)
        return events

    def _finish(self, s: _Session):
        for p in s.pipelines:
            self.vits[p.method.name].end_stream(p.key)

    def reports(self) -> list[StreamReport]:
        for s in self.sessions:
            s.report.counters = {p.method.name: p.counters for p in s.pipelines}
        return [s.report for s in self.sessions]
