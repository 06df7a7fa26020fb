#!/usr/bin/env python3
"""End-to-end test of `moe serve` with the official `openai` Python client.

Usage:
    pip install -r Benchmarks/serve/requirements.txt
    python3 Benchmarks/serve/e2e.py [--moe .build/release/moe] [--model Models/demo/demo.moe]
        [--budget 110] [-k PATTERN] [-v]

Starts five `moe serve` processes on the demo model, each on a port of 127.0.0.1 it picks itself
(--port 0): the main server; one with --api-key and --max-body-size 64KB; one with --context 32
and --fallback to the main one; one with --route min-max-tokens=12 and --fallback to the main
one; one with --request-timeout 0.5. It waits for /health, then checks through the client: chat and text completions, streamed
and not; greedy answers identical twice and streamed = not streamed; max_tokens, stop, seed; the
OpenAI error bodies the client raises (unsupported parameter or value, prompt beyond the context
→ BadRequestError 400, wrong API key → AuthenticationError 401) and the raw 400/401/413 bodies;
504 (or an error event mid-stream) past --request-timeout;
a client that closes a stream after three chunks (the generation stops, the next request is
answered at once, /metrics counts the cancellation) or gives up on a whole answer (499);
/v1/models, /health, /metrics (every documented metric, counts that match the requests); KV
cache reuse (x-reused-tokens = usage.prompt_tokens_details.cached_tokens); the fallback
(x-served-by, x-fallback-reason, the forwarded answer equal to the main server's own, streamed
and not). Every server is stopped at the end, also on failure, on a signal or when the time
budget runs out. Prints one line per check and closes with `N passed, N failed`; exits 1 when
any check failed.
"""
import argparse
import os
import signal
import sys
import time
import traceback

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

API_KEY = "e2e-secret-key"
CHAT_PROMPT = "How do I open a file in Python?"
TEXT_PROMPT = "def fibonacci(n):"
# What a client that goes away asked for: most of the demo model's 1024-token context, about 1.3 s
# of generation in a release build (tens of seconds in a debug one), so an abandoned request that
# the server does not stop shows as (nearly) all of these tokens in moe_completion_tokens_total.
ABANDONED_TOKENS = 1000

# Metrics docs/serving.md documents (issue 18 §2); each must appear as a sample or # TYPE line.
REQUIRED_METRICS = [
    "moe_requests_total",                 # by endpoint, status, engine (local | fallback | none)
    "moe_prompt_tokens_total",
    "moe_completion_tokens_total",
    "moe_prefill_tokens_per_second",      # histogram
    "moe_decode_tokens_per_second",       # histogram
    "moe_queue_depth",
    "moe_expert_cache_hits_total",
    "moe_expert_cache_misses_total",
    "moe_expert_bytes_read_total",
    "moe_expert_stall_seconds_total",
    "moe_expert_pool_bytes",
    "moe_peak_resident_bytes",
]


def cancellations(samples):
    """Requests the server counted as cancelled by the client: a counter named for it, or requests
    answered with nginx's 499 (client closed request)."""
    named = sum(v for n, l, v in samples
                if "cancel" in n and not n.endswith(("_bucket", "_sum", "_count", "_created")))
    labelled = sum(v for n, l, v in samples if n == "moe_requests_total"
                   and (l.get("status") == "499" or "cancel" in " ".join(l.values())))
    return named + labelled


class CheckFailed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


class BudgetExceeded(BaseException):
    """Raised in the main thread by SIGALRM when the whole run takes longer than --budget."""


class E2E:
    def __init__(self, args):
        self.args = args
        self.moe = harness.find_moe(args.moe)
        self.passed, self.failed = 0, 0
        self.failures = []
        self.main = self.keyed = self.front = self.router = self.timed = None
        self.model_id = None
        self.answers = {}
        self.seconds_per_token = None

    # ---- running checks -------------------------------------------------------------------
    def check(self, name, fn, needed=False):
        if self.args.k and self.args.k not in name and not needed:
            return
        t0 = time.monotonic()
        try:
            fn()
        except BudgetExceeded:
            raise
        except Exception as e:  # noqa: BLE001 -- every failure is reported, the run goes on
            self.failed += 1
            detail = f"{type(e).__name__}: {e}"
            self.failures.append((name, detail))
            print(f"FAIL {name} ({time.monotonic() - t0:.1f} s): {detail}", flush=True)
            if self.args.verbose:
                traceback.print_exc()
            return
        self.passed += 1
        print(f"ok   {name} ({time.monotonic() - t0:.1f} s)", flush=True)

    def client(self, server, api_key="unused", **kw):
        return openai.OpenAI(base_url=server.base_url, api_key=api_key, max_retries=0,
                             timeout=kw.pop("timeout", 60.0), **kw)

    # ---- servers --------------------------------------------------------------------------
    def start_servers(self):
        model = self.args.model
        self.main = harness.Server(self.moe, model, ["--max-queue", "8"], name="main").start()
        # Small limits so the error paths are cheap to reach.
        self.keyed = harness.Server(self.moe, model, ["--api-key", API_KEY, "--max-body-size", "64KB"],
                                    name="keyed").start()
        # A tiny context: any real prompt goes to the main server.
        self.front = harness.Server(self.moe, model, ["--context", "32", "--fallback", self.main.url],
                                    name="front").start()
        # A route rule: requests allowing 12 or more tokens go to the main server.
        self.router = harness.Server(self.moe, model, ["--route", "min-max-tokens=12", "--fallback", self.main.url],
                                     name="router").start()

        # A short --request-timeout: a long reply is cut off.
        self.timed = harness.Server(self.moe, model, ["--request-timeout", "0.5"], name="timed").start()

    def servers(self):
        return [s for s in (self.main, self.keyed, self.front, self.router, self.timed) if s is not None]

    def stop_servers(self):
        harness.stop_all()

    # ---- helpers --------------------------------------------------------------------------
    def chat(self, server=None, stream=False, **kw):
        c = self.client(server or self.main)
        params = dict(model=self.model_id, messages=[{"role": "user", "content": CHAT_PROMPT}],
                      max_tokens=16, temperature=0)
        params.update(kw)
        return c.chat.completions.create(stream=stream, **params)

    def complete(self, server=None, stream=False, **kw):
        c = self.client(server or self.main)
        params = dict(model=self.model_id, prompt=TEXT_PROMPT, max_tokens=16, temperature=0)
        params.update(kw)
        return c.completions.create(stream=stream, **params)

    def metrics(self, server):
        return harness.parse_metrics(server.metrics())

    def expect_error(self, exc_type, status, fn):
        try:
            fn()
        except exc_type as e:
            expect(e.status_code == status, f"status {e.status_code}, expected {status}")
            body = e.body
            expect(isinstance(body, dict), f"error body is not an OpenAI error object: {body!r}")
            expect(isinstance(body.get("message"), str) and body["message"],
                   f"error body has no message: {body!r}")
            expect("type" in body, f"error body has no type: {body!r}")
            return body
        except openai.APIStatusError as e:
            raise CheckFailed(f"{type(e).__name__} status {e.status_code} body {e.body!r}, "
                              f"expected {exc_type.__name__} ({status})")
        raise CheckFailed(f"no error, expected {exc_type.__name__} ({status})")

    def raw_error(self, response, status):
        expect(response.status == status, f"status {response.status}, expected {status}: "
                                               f"{response.text[:200]!r}")
        try:
            body = response.json()
        except ValueError:
            raise CheckFailed(f"error body is not JSON: {response.text[:200]!r}")
        err = body.get("error") if isinstance(body, dict) else None
        expect(isinstance(err, dict) and isinstance(err.get("message"), str),
               f"not an OpenAI error body: {body!r}")
        return err

    # ---- checks ---------------------------------------------------------------------------
    def t_health(self):
        r = harness.request("GET", f"{self.main.url}/health")
        expect(r.status == 200, f"/health status {r.status}")

    def t_models(self):
        models = list(self.client(self.main).models.list())
        expect(len(models) >= 1, "no models listed")
        m = models[0]
        expect(isinstance(m.id, str) and m.id, f"model id {m.id!r}")
        expect(m.object == "model", f"object {m.object!r}")
        self.model_id = m.id

    def t_chat(self):
        t0 = time.monotonic()
        r = self.chat()
        elapsed = time.monotonic() - t0
        expect(r.object == "chat.completion", f"object {r.object!r}")
        expect(len(r.choices) == 1, f"{len(r.choices)} choices")
        ch = r.choices[0]
        expect(ch.message.role == "assistant", f"role {ch.message.role!r}")
        expect(isinstance(ch.message.content, str), f"content {ch.message.content!r}")
        expect(ch.finish_reason in ("stop", "length"), f"finish_reason {ch.finish_reason!r}")
        expect(r.usage is not None and r.usage.prompt_tokens > 0, f"usage {r.usage!r}")
        expect(0 < r.usage.completion_tokens <= 16, f"completion_tokens {r.usage.completion_tokens}")
        expect(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
               f"total_tokens {r.usage!r}")
        self.answers["chat"] = ch.message.content
        self.seconds_per_token = elapsed / max(1, r.usage.completion_tokens)
        if self.args.verbose:
            print(f"     chat answer: {ch.message.content!r}")

    def t_chat_deterministic(self):
        again = self.chat().choices[0].message.content
        expect(again == self.answers["chat"], f"{again!r} != {self.answers['chat']!r}")

    def t_chat_stream(self):
        chunks = list(self.chat(stream=True))
        expect(chunks, "no chunks")
        expect(all(c.object == "chat.completion.chunk" for c in chunks),
               f"objects {set(c.object for c in chunks)}")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        expect(finish and finish[-1] in ("stop", "length"), f"finish reasons {finish}")
        expect(len({c.id for c in chunks}) == 1, "chunks carry different ids")
        expect(text == self.answers["chat"], f"streamed {text!r} != non-streamed {self.answers['chat']!r}")

    def t_completion(self):
        r = self.complete()
        expect(r.object == "text_completion", f"object {r.object!r}")
        expect(len(r.choices) == 1, f"{len(r.choices)} choices")
        ch = r.choices[0]
        expect(isinstance(ch.text, str) and ch.text, f"text {ch.text!r}")
        expect(ch.finish_reason in ("stop", "length"), f"finish_reason {ch.finish_reason!r}")
        expect(r.usage is not None and r.usage.prompt_tokens > 0, f"usage {r.usage!r}")
        expect(0 < r.usage.completion_tokens <= 16, f"completion_tokens {r.usage.completion_tokens}")
        self.answers["text"] = ch.text
        if self.args.verbose:
            print(f"     completion: {ch.text!r}")

    def t_completion_deterministic(self):
        again = self.complete().choices[0].text
        expect(again == self.answers["text"], f"{again!r} != {self.answers['text']!r}")

    def t_completion_stream(self):
        chunks = list(self.complete(stream=True))
        expect(chunks, "no chunks")
        expect(all(c.object == "text_completion" for c in chunks), f"objects {set(c.object for c in chunks)}")
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        expect(finish and finish[-1] in ("stop", "length"), f"finish reasons {finish}")
        expect(text == self.answers["text"], f"streamed {text!r} != non-streamed {self.answers['text']!r}")

    def t_max_tokens(self):
        r = self.complete(max_tokens=3)
        expect(r.usage.completion_tokens <= 3, f"completion_tokens {r.usage.completion_tokens}")
        expect(self.answers["text"].startswith(r.choices[0].text),
               f"{r.choices[0].text!r} is not a prefix of {self.answers['text']!r}")
        if r.usage.completion_tokens == 3:
            expect(r.choices[0].finish_reason == "length", f"finish_reason {r.choices[0].finish_reason!r}")

    def t_stop(self):
        full = self.answers["text"]
        # A stop string from the middle of the greedy answer: the reply is the text before it.
        start = next((i for i in range(max(1, len(full) // 3), len(full)) if not full[i].isspace()), None)
        expect(start is not None, f"answer too short for a stop test: {full!r}")
        stop = full[start:start + 3]
        expected = full[:full.index(stop)]
        r = self.complete(stop=[stop])
        expect(r.choices[0].text == expected, f"stop {stop!r}: {r.choices[0].text!r} != {expected!r}")
        expect(r.choices[0].finish_reason == "stop", f"finish_reason {r.choices[0].finish_reason!r}")

    def t_seed(self):
        a = self.complete(temperature=0.9, top_p=0.95, seed=1234).choices[0].text
        b = self.complete(temperature=0.9, top_p=0.95, seed=1234).choices[0].text
        expect(a == b, f"same seed, different text: {a!r} != {b!r}")

    def t_unsupported_parameter(self):
        self.expect_error(openai.BadRequestError, 400, lambda: self.chat(n=2))
        self.expect_error(openai.BadRequestError, 400, lambda: self.chat(
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]))
        self.expect_error(openai.BadRequestError, 400, lambda: self.complete(temperature=-1))
        self.expect_error(openai.BadRequestError, 400, lambda: self.complete(extra_body={"no_such_parameter": 1}))

    def t_prompt_beyond_context(self):
        long_prompt = "the quick brown fox jumps over the lazy dog " * 800  # ~7000 tokens > 4096
        body = self.expect_error(openai.BadRequestError, 400, lambda: self.complete(prompt=long_prompt))
        if self.args.verbose:
            print(f"     error: {body}")
        self.expect_error(openai.BadRequestError, 400, lambda: self.chat(
            messages=[{"role": "user", "content": long_prompt}]))

    def t_malformed_body(self):
        r = harness.request("POST", f"{self.main.base_url}/chat/completions", b"{not json",
                            {"content-type": "application/json"})
        self.raw_error(r, 400)
        r = harness.request("POST", f"{self.main.base_url}/chat/completions", {"model": self.model_id})
        self.raw_error(r, 400)  # no messages

    def t_api_key(self):
        self.expect_error(openai.AuthenticationError, 401,
                          lambda: self.client(self.keyed, api_key="wrong").completions.create(
                              model=self.model_id, prompt=TEXT_PROMPT, max_tokens=2))
        r = harness.request("GET", f"{self.keyed.base_url}/models")  # no Authorization header
        self.raw_error(r, 401)
        r = self.client(self.keyed, api_key=API_KEY).completions.create(
            model=self.model_id, prompt=TEXT_PROMPT, max_tokens=16, temperature=0)
        expect(r.choices[0].text == self.answers["text"], "right key: answer differs from the main server's")

    def t_body_too_large(self):
        big = {"model": self.model_id, "prompt": "x" * (128 * 1024), "max_tokens": 1}  # > 64KB
        r = harness.request("POST", f"{self.keyed.base_url}/completions", big,
                            {"authorization": f"Bearer {API_KEY}"})
        self.raw_error(r, 413)

    def t_disconnect(self):
        abandoned = ABANDONED_TOKENS
        before, _ = self.metrics(self.main)
        cancelled0 = cancellations(before)
        tokens0 = harness.metric_sum(before, "moe_completion_tokens_total")
        stream = self.complete(stream=True, max_tokens=abandoned)
        got = 0
        for chunk in stream:
            got += 1
            if got >= 3:
                break
        stream.close()  # drops the connection mid-stream
        expect(got == 3, f"only {got} chunks before the stream ended")
        # The next request is served at once, not after the abandoned generation.
        t0 = time.monotonic()
        r = self.complete(max_tokens=4)
        elapsed = time.monotonic() - t0
        full = abandoned * (self.seconds_per_token or 0.05)
        if self.args.verbose:
            print(f"     next request after the disconnect: {elapsed:.2f} s "
                  f"(the abandoned {abandoned} tokens: ~{full:.1f} s)")
        expect(r.choices[0].text, "empty answer after the disconnect")
        expect(elapsed < max(2.0, min(5.0, full / 4)),
               f"next request took {elapsed:.2f} s; the abandoned generation would take ~{full:.1f} s")
        after, _ = self.metrics(self.main)
        generated = harness.metric_sum(after, "moe_completion_tokens_total") - tokens0 - r.usage.completion_tokens
        expect(generated < abandoned * 0.7,
               f"the abandoned stream generated {generated:.0f} of its {abandoned} tokens (not stopped)")
        deadline = time.monotonic() + 3
        while True:
            cancelled = cancellations(after)
            if cancelled > cancelled0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
            after, _ = self.metrics(self.main)
        expect(cancelled >= cancelled0 + 1,
               f"/metrics does not show the cancelled stream (no *cancel* counter or status 499 grew: "
               f"{cancelled0:.0f} -> {cancelled:.0f}; {generated:.0f} tokens were generated, so it was stopped)")

    def t_disconnect_waiting(self):
        # A client that gives up on a non-streamed reply: the server counts 499 and moves on.
        before, _ = self.metrics(self.main)
        closed0 = harness.metric_sum(before, "moe_requests_total", status="499")
        tokens0 = harness.metric_sum(before, "moe_completion_tokens_total")
        c = self.client(self.main, timeout=0.3)
        try:
            c.completions.create(model=self.model_id, prompt=TEXT_PROMPT, max_tokens=ABANDONED_TOKENS, temperature=0)
            raise CheckFailed(f"{ABANDONED_TOKENS} tokens came back within 0.3 s: cannot test a client that gives up")
        except openai.APITimeoutError:
            pass
        t0 = time.monotonic()
        r = self.complete(max_tokens=4)
        elapsed = time.monotonic() - t0
        expect(elapsed < 5.0, f"next request took {elapsed:.2f} s")
        deadline = time.monotonic() + 3
        while True:
            after, _ = self.metrics(self.main)
            closed = harness.metric_sum(after, "moe_requests_total", status="499")
            if closed > closed0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        expect(closed == closed0 + 1, f'moe_requests_total{{status="499"}} {closed0:.0f} -> {closed:.0f}')
        generated = harness.metric_sum(after, "moe_completion_tokens_total") - tokens0 - r.usage.completion_tokens
        expect(generated < ABANDONED_TOKENS * 0.7,
               f"the abandoned request generated {generated:.0f} of its {ABANDONED_TOKENS} tokens (not stopped)")

    def t_metrics(self):
        text = self.main.metrics()
        samples, types = harness.parse_metrics(text)
        names = {n for n, _, _ in samples} | set(types)
        base = {n.rsplit("_bucket", 1)[0].rsplit("_sum", 1)[0].rsplit("_count", 1)[0] for n in names}
        missing = [m for m in REQUIRED_METRICS if m not in names and m not in base]
        expect(not missing, f"missing metrics: {missing}")
        expect(types.get("moe_decode_tokens_per_second") == "histogram",
               f"moe_decode_tokens_per_second is a {types.get('moe_decode_tokens_per_second')}, not a histogram")
        ok = harness.metric_sum(samples, "moe_requests_total", status="200", engine="local")
        expect(ok >= 10, f'moe_requests_total{{status="200",engine="local"}} = {ok} after at least 10 answered requests')
        ok_chat = harness.metric_sum(samples, "moe_requests_total", endpoint="/v1/chat/completions", status="200")
        expect(ok_chat >= 3, f'moe_requests_total{{endpoint="/v1/chat/completions",status="200"}} = {ok_chat}')
        bad = harness.metric_sum(samples, "moe_requests_total", status="400")
        expect(bad >= 6, f'moe_requests_total{{status="400"}} = {bad} after at least 6 rejected requests')
        out = harness.metric_sum(samples, "moe_completion_tokens_total")
        expect(out >= 16 * 6, f"moe_completion_tokens_total = {out}")
        decoded = harness.metric_sum(samples, "moe_decode_tokens_per_second_count")
        expect(decoded >= 6, f"moe_decode_tokens_per_second_count = {decoded}")
        rss = harness.metric_sum(samples, "moe_peak_resident_bytes")
        expect(rss > 1 << 20, f"moe_peak_resident_bytes = {rss}")

    def t_fallback(self):
        c = self.client(self.front)
        params = dict(model=self.model_id, messages=[{"role": "user", "content": CHAT_PROMPT * 8}],
                      max_tokens=12, temperature=0)
        raw = c.chat.completions.with_raw_response.create(**params)
        expect(raw.headers.get("x-served-by") == "fallback",
               f"x-served-by {raw.headers.get('x-served-by')!r} for a prompt beyond --context 32")
        forwarded = raw.parse().choices[0].message.content
        raw_main = self.client(self.main).chat.completions.with_raw_response.create(**params)
        expect(raw_main.headers.get("x-served-by") == "local",
               f"main server: x-served-by {raw_main.headers.get('x-served-by')!r}")
        own = raw_main.parse().choices[0].message.content
        expect(forwarded == own, f"forwarded {forwarded!r} != main server's {own!r}")
        # Streamed through the fallback: the same text, chunk by chunk.
        with c.chat.completions.with_streaming_response.create(stream=True, **params) as resp:
            expect(resp.headers.get("x-served-by") == "fallback",
                   f"streamed: x-served-by {resp.headers.get('x-served-by')!r}")
            text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
        expect(text == own, f"streamed through the fallback {text!r} != {own!r}")
        # A short prompt stays local.
        raw = c.completions.with_raw_response.create(model=self.model_id, prompt="x", max_tokens=2,
                                                     temperature=0)
        expect(raw.headers.get("x-served-by") == "local",
               f"short prompt: x-served-by {raw.headers.get('x-served-by')!r}")
        samples, _ = self.metrics(self.front)
        fb = harness.metric_sum(samples, "moe_requests_total", engine="fallback", status="200")
        expect(fb >= 2, f'moe_requests_total{{engine="fallback",status="200"}} = {fb} on the forwarding server')
        local = harness.metric_sum(samples, "moe_requests_total", engine="local", status="200")
        expect(local >= 1, f'moe_requests_total{{engine="local",status="200"}} = {local} on the forwarding server')
        fr = harness.metric_sum(samples, "moe_fallback_requests_total", reason="context")
        expect(fr >= 2, f'moe_fallback_requests_total{{reason="context"}} = {fr}')

    def t_route(self):
        # A --route rule sends what this server could take: min-max-tokens=12 on a short prompt.
        c = self.client(self.router)
        params = dict(model=self.model_id, prompt=TEXT_PROMPT, max_tokens=16, temperature=0)
        raw = c.completions.with_raw_response.create(**params)
        expect(raw.headers.get("x-served-by") == "fallback", f"x-served-by {raw.headers.get('x-served-by')!r}")
        expect(raw.headers.get("x-fallback-reason") == "route", f"x-fallback-reason {raw.headers.get('x-fallback-reason')!r}")
        expect(raw.parse().choices[0].text == self.answers["text"], "routed answer differs from the main server's")
        raw = c.completions.with_raw_response.create(**dict(params, max_tokens=4))
        expect(raw.headers.get("x-served-by") == "local", f"below the rule: x-served-by {raw.headers.get('x-served-by')!r}")
        expect(self.answers["text"].startswith(raw.parse().choices[0].text), "local answer is not a prefix of the greedy one")

    def t_request_timeout(self):
        c = self.client(self.timed)
        long = dict(model=self.model_id, prompt=TEXT_PROMPT, max_tokens=ABANDONED_TOKENS, temperature=0)
        # Whole answer: 504 with an OpenAI error body.
        try:
            c.completions.create(**long)
            raise CheckFailed(f"{ABANDONED_TOKENS} tokens within --request-timeout 0.5")
        except openai.APIStatusError as e:
            expect(e.status_code == 504, f"status {e.status_code}, expected 504: {e.body!r}")
            expect(isinstance(e.body, dict) and e.body.get("type") == "timeout_error", f"body {e.body!r}")
        # Streamed: the head is out, so the timeout arrives as an error event the client raises.
        chunks = 0
        try:
            for _ in c.completions.create(stream=True, **long):
                chunks += 1
            raise CheckFailed(f"the stream ended normally after {chunks} chunks")
        except openai.APIStatusError as e:
            raise CheckFailed(f"streamed: status {e.status_code} before any chunk, expected an error event")
        except openai.APIError as e:
            expect(isinstance(e.body, dict) and e.body.get("type") == "timeout_error", f"streamed: error {e.body!r}")
        r = c.completions.create(model=self.model_id, prompt=TEXT_PROMPT, max_tokens=2, temperature=0)
        expect(r.choices[0].text, "no answer after the timeouts")
        samples, _ = self.metrics(self.timed)
        generated = harness.metric_sum(samples, "moe_completion_tokens_total") - r.usage.completion_tokens
        expect(generated < 2 * ABANDONED_TOKENS * 0.7, f"the two timed-out requests generated {generated:.0f} tokens")
        timeouts = harness.metric_sum(samples, "moe_requests_total", status="504")
        expect(timeouts >= 1, f'moe_requests_total{{status="504"}} = {timeouts}')

    def t_kv_reuse(self):
        # A request that extends the previous conversation reuses its KV cache entries.
        first = self.answers["chat"]
        messages = [{"role": "user", "content": CHAT_PROMPT}, {"role": "assistant", "content": first},
                    {"role": "user", "content": "And how do I close it?"}]
        self.chat()  # the conversation so far is what the model last saw
        raw = self.client(self.main).chat.completions.with_raw_response.create(
            model=self.model_id, messages=messages, max_tokens=8, temperature=0)
        reused = int(raw.headers.get("x-reused-tokens", "0"))
        usage = raw.parse().usage
        expect(reused > 0, f"x-reused-tokens {raw.headers.get('x-reused-tokens')!r} for an extended conversation")
        expect(reused < usage.prompt_tokens, f"reused {reused} of {usage.prompt_tokens} prompt tokens")
        details = usage.prompt_tokens_details
        cached = details.cached_tokens if details is not None else None
        expect(cached == reused, f"usage.prompt_tokens_details.cached_tokens {cached!r} != x-reused-tokens {reused}")

    def t_still_healthy(self):
        for s in self.servers():
            expect(s.alive(), f"{s.name} server exited with status {s.proc.returncode}")
            r = harness.request("GET", f"{s.url}/health")
            expect(r.status == 200, f"{s.name}: /health {r.status}")

    # ---- the run --------------------------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        print(f"moe: {self.moe}\nmodel: {self.args.model}\nopenai {openai.__version__}", flush=True)
        try:
            self.check("servers start and answer /health", self.start_servers, needed=True)
            if self.failed:
                return
            self.check("GET /health", self.t_health)
            self.check("GET /v1/models", self.t_models, needed=True)
            if self.model_id is None:
                return
            self.check("chat completion", self.t_chat, needed=True)
            self.check("chat completion, greedy, deterministic", self.t_chat_deterministic)
            self.check("chat completion, streamed = not streamed", self.t_chat_stream)
            self.check("text completion", self.t_completion, needed=True)
            self.check("text completion, greedy, deterministic", self.t_completion_deterministic)
            self.check("text completion, streamed = not streamed", self.t_completion_stream)
            self.check("max_tokens", self.t_max_tokens)
            self.check("stop", self.t_stop)
            self.check("seed: same seed, same sample", self.t_seed)
            self.check("unsupported parameter or value -> 400 BadRequestError", self.t_unsupported_parameter)
            self.check("prompt beyond the context -> 400", self.t_prompt_beyond_context)
            self.check("malformed body -> 400", self.t_malformed_body)
            self.check("--api-key: wrong key -> 401, right key answers", self.t_api_key)
            self.check("--max-body-size -> 413", self.t_body_too_large)
            self.check("client disconnect mid-stream", self.t_disconnect)
            self.check("client disconnect while waiting for a non-streamed reply -> 499", self.t_disconnect_waiting)
            self.check("GET /metrics", self.t_metrics)
            self.check("--request-timeout -> 504, or an error event mid-stream", self.t_request_timeout)
            self.check("KV cache reused when a request extends the conversation", self.t_kv_reuse)
            self.check("fallback (prompt beyond --context): x-served-by, forwarded answer = main server's",
                       self.t_fallback)
            self.check("fallback (--route min-max-tokens=12)", self.t_route)
            self.check("servers still alive", self.t_still_healthy)
        except BudgetExceeded:
            self.failed += 1
            self.failures.append(("time budget", f"over {self.args.budget:.0f} s"))
            print(f"FAIL time budget: the run took more than {self.args.budget:.0f} s", flush=True)
        finally:
            if self.failed:
                for s in self.servers():
                    print(f"--- {s.name} server log (last lines) ---\n{s.log_tail()}", end="")
            self.stop_servers()
            print(f"e2e: {time.monotonic() - t0:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--moe", help="moe binary (default: $MOE, .build/release/moe, .build/debug/moe)")
    ap.add_argument("--model", default=harness.DEMO_MODEL)
    ap.add_argument("--budget", type=float, default=110.0, help="seconds for the whole run")
    ap.add_argument("-k", help="only checks whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    def over_budget(signum, frame):
        raise BudgetExceeded()

    signal.signal(signal.SIGALRM, over_budget)
    signal.alarm(int(args.budget))
    e = E2E(args)
    try:
        e.run()
    finally:
        signal.alarm(0)
    print(f"{e.passed} passed, {e.failed} failed", flush=True)
    sys.exit(1 if e.failed else 0)


if __name__ == "__main__":
    main()
