"""Prometheus metrics: one registry per app, so tests and several apps never share counters."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


class Metrics:
    """Everything the service reports at GET /metrics."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("tts_http_requests_total", "HTTP requests by endpoint and status.",
                                ["endpoint", "method", "status"], registry=registry)
        self.latency = Histogram("tts_http_request_seconds", "HTTP request latency (to the last byte).",
                                 ["endpoint"], registry=registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
        self.audio_seconds = Counter("tts_audio_seconds_total", "Seconds of audio generated.",
                                     ["engine", "language"], registry=registry)
        self.real_time_factor = Histogram("tts_real_time_factor",
                                          "Audio seconds per second of generation, per request.",
                                          ["engine"], registry=registry,
                                          buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
        self.time_to_first_audio = Histogram("tts_time_to_first_audio_seconds",
                                             "From submission to the first audio frame.", ["engine"],
                                             registry=registry,
                                             buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
        self.queue_depth = Gauge("tts_queue_depth", "Requests waiting for a slot.", ["engine"], registry=registry)
        self.active = Gauge("tts_active_requests", "Requests being generated.", ["engine"], registry=registry)
        self.batch_size = Histogram("tts_batch_size", "Requests advanced together per generation step.",
                                    ["engine"], registry=registry, buckets=(1, 2, 4, 8, 16, 32, 64))
        self.cache = Counter("tts_cache_requests_total", "Audio cache look-ups by result.", ["result"],
                             registry=registry)
        self.realtime_headroom = Gauge("tts_realtime_headroom", "How many times faster than real time the requests "
                                       "being generated run (a step's audio over its measured cost; idle: one request); "
                                       "0 before any step.",
                                       ["engine"], registry=registry)
        self.held_for_realtime = Gauge("tts_requests_held_for_realtime", "Requests that waited for room that keeps "
                                       "the batch real time.", ["engine"], registry=registry)
        self.load_seconds = Gauge("tts_model_load_seconds", "Time taken to load each model.", ["engine"],
                                  registry=registry)
        self.model_ready = Gauge("tts_model_ready", "1 when the model is loaded and serving.", ["engine"],
                                 registry=registry)
        self.rejected = Counter("tts_rejected_total", "Requests refused before synthesis, by reason.",
                                ["reason"], registry=registry)

    def observe_job(self, engine: str, language: str, job) -> None:
        """Record a finished job's audio, speed and first-audio latency."""
        if job.samples <= 0 or job.finished_at is None:
            return
        seconds = job.samples / job.sample_rate
        self.audio_seconds.labels(engine, language).inc(seconds)
        elapsed = job.finished_at - job.created
        if elapsed > 0:
            self.real_time_factor.labels(engine).observe(seconds / elapsed)
        if job.first_audio_at is not None:
            self.time_to_first_audio.labels(engine).observe(job.first_audio_at - job.created)

    def refresh(self, router) -> None:
        """Gauges read at scrape time from the schedulers."""
        for key, scheduler in router.schedulers.items():
            self.queue_depth.labels(key).set(scheduler.queue_depth)
            self.active.labels(key).set(scheduler.active)
            self.realtime_headroom.labels(key).set(scheduler.realtime_headroom or 0)
            self.held_for_realtime.labels(key).set(scheduler.stats.held_for_realtime)
            self.model_ready.labels(key).set(1 if scheduler.engine.is_loaded else 0)
            if scheduler.engine.load_seconds is not None:
                self.load_seconds.labels(key).set(scheduler.engine.load_seconds)

    def install(self, app: Flask) -> None:
        """Time and count every request, and serve GET /metrics."""

        @app.before_request
        def _start_timer():
            g.metrics_started = time.perf_counter()

        @app.after_request
        def _count(response: Response) -> Response:
            # Label values come from fixed sets (the app's routes, standard methods, real statuses):
            # a made-up method or path must not create a new time series.
            endpoint = request.url_rule.rule if request.url_rule else OTHER
            method = request.method if request.method in METHODS else OTHER
            status = str(response.status_code) if 100 <= response.status_code < 600 else OTHER
            self.requests.labels(endpoint, method, status).inc()
            started = g.get("metrics_started")
            if started is not None and not response.is_streamed:
                self.latency.labels(endpoint).observe(time.perf_counter() - started)
            return response

        @app.get("/metrics")
        def metrics():
            self.refresh(app.extensions["tts_service"].router)
            return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)
