"""Shared by e2e.py and load.py: find `moe`, start `moe serve` on a free loopback port, wait
for /health, stop it (also when the caller fails), read /metrics.

Every server listens on 127.0.0.1 only; every process started here is stopped by `stop_all()`,
which runs at exit and on SIGTERM/SIGINT/SIGHUP.
"""
import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import http.client
import json
from urllib.parse import urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_MODEL = os.path.join(REPO, "Models", "demo", "demo.moe")
HOST = "127.0.0.1"

_servers = []


def find_moe(explicit=None):
    """The `moe` binary: --moe, then $MOE, then .build/release/moe, then .build/debug/moe."""
    candidates = [explicit, os.environ.get("MOE"),
                  os.path.join(REPO, ".build", "release", "moe"),
                  os.path.join(REPO, ".build", "debug", "moe")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    sys.exit("error: no moe binary: build it (`swift build -c release --product moe`) or pass --moe PATH")


class ServerError(Exception):
    pass


# `moe serve --port 0` binds a free port and says which: "moe serve: NAME (context N) on http://HOST:PORT/v1".
_LISTENING = re.compile(r"on http://[^\s/]+:(\d+)/v1")


class Server:
    """One `moe serve` process on 127.0.0.1, on a port the server picks (--port 0, so no race)."""

    def __init__(self, moe, model, args=(), name="server", startup_timeout=30.0):
        self.moe, self.model, self.args, self.name = moe, model, list(args), name
        self.startup_timeout = startup_timeout
        self.proc = None
        self.port = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"moe-serve-{name}-", suffix=".log", delete=False)

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self):
        return f"{self.url}/v1"

    def command(self):
        return [self.moe, "serve", self.model, "--host", HOST, "--port", "0"] + self.args

    def start(self):
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _servers.append(self)
        try:
            self.wait_healthy()
        except ServerError as e:
            self.stop()
            raise ServerError(f"{self.name}: {e}\n$ {' '.join(self.command())}\n--- log ---\n{self.log_tail()}")
        return self

    def wait_healthy(self):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"exited with status {self.proc.returncode} before /health answered")
            if self.port is None:
                m = _LISTENING.search(self.log_text())
                if m:
                    self.port = int(m.group(1))
                else:
                    time.sleep(0.05)
                    continue
            try:
                if request("GET", f"{self.url}/health", timeout=1.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerError(f"/health did not answer 200 within {self.startup_timeout:.0f} s")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=5.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=grace)
        except ProcessLookupError:
            pass

    def log_text(self):
        try:
            with open(self.log.name, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=30):
        try:
            with open(self.log.name, "r", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def metrics(self):
        r = request("GET", f"{self.url}/metrics", timeout=10.0)
        if r.status != 200:
            raise ServerError(f"/metrics status {r.status}")
        return r.text


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)


def request(method, url, body=None, headers=None, timeout=10.0):
    """One plain HTTP/1.1 request (stdlib only, independent of the openai client's HTTP stack).
    `body` may be bytes or a JSON-serializable object."""
    u = urlsplit(url)
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers)
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def stop_all():
    for s in reversed(_servers):
        try:
            s.stop()
        except Exception:  # keep stopping the others
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
    for s in _servers:
        try:
            os.unlink(s.log.name)
        except OSError:
            pass
    _servers.clear()


def _on_signal(signum, frame):
    stop_all()
    sys.exit(128 + signum)


atexit.register(stop_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# Prometheus text format: `name{label="v",...} value [timestamp]`.
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample; also {name: type} from # TYPE lines."""
    samples, types = [], {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples, types


def metric_sum(samples, name, **labels):
    """Sum of every sample called `name` whose labels include `labels`."""
    return sum(v for n, l, v in samples
               if n == name and all(l.get(k) == str(x) for k, x in labels.items()))


def _jiffies_busy():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    return sum(parts[:8]) - idle


def _proc_jiffies(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime stime cutime cstime


class OtherLoad:
    """CPU that processes other than `pids` (and this one) used over an interval, in cores: how
    much a measurement shared the machine. Linux only; None elsewhere."""

    def __init__(self, pids):
        self.pids = list(pids) + [os.getpid()]
        try:
            self.start = (time.monotonic(), _jiffies_busy(), sum(_proc_jiffies(p) for p in self.pids))
        except (OSError, ValueError, IndexError):
            self.start = None

    def cores(self):
        if self.start is None:
            return None
        try:
            t, busy, own = time.monotonic(), _jiffies_busy(), sum(_proc_jiffies(p) for p in self.pids)
        except (OSError, ValueError, IndexError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        other = (busy - self.start[1]) - (own - self.start[2])
        return max(0.0, other / hz / max(1e-9, t - self.start[0]))


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "unknown CPU"
