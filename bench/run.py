#!/usr/bin/env python3
"""Runs the comparison benchmark of issue 6: ssehub against its baselines, on equal terms.

    python3 bench/run.py                        # everything: builds, 5 servers x 7 scenarios x 3 runs
    python3 bench/run.py --servers ssehub,axum-broadcast --scenarios a,b --runs 1 --duration 5
    python3 bench/run.py --scenarios u1 --scale 0.01 --runs 1 --duration 2   # a tiny uni-cast run
    python3 bench/run.py --smoke                # one push to one subscriber per server, no load

Broadcast scenarios (a-d) push every event to every client; uni-cast ones (u1, u10, umax, issue
16) address each push to 1 or 10 clients' uids. A server takes part in the scenarios whose mode
it supports (axum-broadcast only broadcast, axum-unicast only uni-cast).

For each scenario, each run and each server (in that order, so that slow drift of a shared machine
touches every server alike) it starts a fresh server pinned to core 0 (`taskset -c 0`), waits until
its port accepts, runs `ssehub bench` pinned to core 1 (`taskset -c 1`) with the server's pid, and
stops the server. The generator's JSON line of every run goes to bench/results/<timestamp>.jsonl;
the medians go to stdout as a markdown table, with the ratios of ssehub against each baseline.

Standard library only. Servers are stopped at the end, on errors and on Ctrl+C too. All traffic
goes to 127.0.0.1. See bench/README.md for the method and what the columns mean.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import http.client
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# The event's data: `{seq} {ts}` first (the generator reads them back), padded to 100 bytes.
DATA_PREFIX = "{seq} {ts} "
DATA_PADDING = "x" * (100 - len("123456 1700000000000000000 "))
DATA_TEMPLATE = DATA_PREFIX + DATA_PADDING


@dataclass(frozen=True)
class Scenario:
    """One row of the issue's table."""

    key: str
    clients: int
    rate: int  # pushes per second; 0 = idle connections, memory only
    title: str
    # "broadcast": every push to every client; "unicast": each push to `uids_per_push` clients'
    # uids, round-robin (`{client}` in the stream URL, `--uids-per-push` K).
    mode: str = "broadcast"
    uids_per_push: int = 1
    # A search: the highest rate of --umax-rates that keeps p99 <= --umax-p99 with nothing lost
    # (`rate` unused; see `search_verdict` and bench/README.md).
    search: bool = False


SCENARIOS = {
    "a": Scenario("a", 1_000, 200, "1,000 clients x 200 pushes/s"),
    "b": Scenario("b", 1_000, 1_000, "1,000 clients x 1,000 pushes/s"),
    "c": Scenario("c", 10_000, 10, "10,000 clients x 10 pushes/s"),
    "d": Scenario("d", 10_000, 0, "10,000 idle connections (memory)"),
    "u1": Scenario("u1", 10_000, 2_000, "uni-cast: 10,000 clients x 2,000 pushes/s, 1 uid a push",
                   mode="unicast", uids_per_push=1),
    "u10": Scenario("u10", 10_000, 2_000,
                    "uni-cast: 10,000 clients x 2,000 pushes/s, 10 uids a push",
                    mode="unicast", uids_per_push=10),
    "u1x": Scenario("u1x", 10_000, 10_000,
                    "uni-cast: 10,000 clients x 10,000 pushes/s, 1 uid a push",
                    mode="unicast", uids_per_push=1),
    "umax": Scenario("umax", 10_000, 0, "uni-cast: 10,000 clients, highest push rate, 1 uid a push",
                     mode="unicast", uids_per_push=1, search=True),
}

# The rates `umax` tries, in order, and its latency bound (--umax-rates, --umax-p99).
UMAX_RATES = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 40_000]
UMAX_P99_MS = 50.0


# The batch delay of the ssehub-batched server, in ms (--batch-delay-ms).
BATCH_DELAY_MS = 5


@dataclass(frozen=True)
class Addressing:
    """How a uni-cast run reaches a server: the stream URL with `{client}` (client i subscribes
    as uid `c<i>`), the push URL and body (`{uid}`, `{uids:c}`: see `ssehub bench --help`), and
    the push headers (the content type)."""

    sse_url: str
    push_url: str
    body: str
    headers: list[str]


@dataclass
class Server:
    """How to start one server and push to it."""

    name: str
    port: int
    body: str
    headers: list[str] = field(default_factory=list)
    # Takes part in the broadcast scenarios (a-d).
    broadcast: bool = True
    # How the uni-cast scenarios address it; None: it has no uni-cast.
    unicast: Addressing | None = None

    def supports(self, mode: str) -> bool:
        return self.broadcast if mode == "broadcast" else self.unicast is not None

    def command(self, paths: dict[str, Path], workdir: Path, mode: str = "broadcast") -> list[str]:
        if self.name in ("ssehub", "ssehub-store", "ssehub-batched"):
            return [str(paths["ssehub-server"])]
        if self.name == "axum-broadcast":
            return [str(paths["axum-broadcast"])]
        if self.name == "axum-unicast":
            return [str(paths["axum-unicast"])]
        if self.name == "nginx-nchan":
            # Uni-cast: the same nginx with a channel per user (nginx-unicast.conf.template).
            template = "nginx-unicast.conf.template" if mode == "unicast" else "nginx.conf.template"
            return [str(BENCH / "nchan" / "run-nginx.sh"), str(self.port), str(workdir), template]
        raise ValueError(self.name)

    def sse_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def push_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"


def make_servers(port_base: int) -> dict[str, Server]:
    ssehub_body = json.dumps({"events": [{"data": DATA_TEMPLATE}]}, separators=(",", ":"))
    # The ssehub push API with the push's uids (`{uids:c}`: "c17","c42"), for ssehub and for
    # axum-unicast, which takes the same JSON.
    json_unicast_body = '{"uids":[{uids:c}],"events":' + json.dumps(
        [{"data": DATA_TEMPLATE}], separators=(",", ":")
    ) + "}"
    json_headers = ["Content-Type: application/json"]

    def json_unicast(port: int) -> Addressing:
        return Addressing(
            f"http://127.0.0.1:{port}/events?uid=c{{client}}", f"http://127.0.0.1:{port}/push",
            json_unicast_body, json_headers,
        )

    return {
        # The hub's example server: JSON push API, no `uids` broadcasts to every connection;
        # uni-cast: `?uid=` on the stream, `uids` in the push.
        "ssehub": Server("ssehub", port_base, ssehub_body, json_headers,
                         unicast=json_unicast(port_base)),
        # The same with every push saved on disk first (RedbStore, resend on): the price of history.
        "ssehub-store": Server(
            "ssehub-store", port_base + 3, ssehub_body, json_headers,
            unicast=json_unicast(port_base + 3),
        ),
        # The same in memory with `batch_delay` (--batch-delay-ms, 5 by default): up to that much
        # more latency, fewer writes.
        "ssehub-batched": Server(
            "ssehub-batched", port_base + 4, ssehub_body, json_headers,
            unicast=json_unicast(port_base + 4),
        ),
        # The raw body is the event's data.
        "axum-broadcast": Server(
            "axum-broadcast", port_base + 1, DATA_TEMPLATE, ["Content-Type: text/plain"]
        ),
        # Uni-cast only: the same JSON as ssehub's.
        "axum-unicast": Server(
            "axum-unicast", port_base + 5, json_unicast_body, json_headers, broadcast=False,
            unicast=json_unicast(port_base + 5),
        ),
        # Uni-cast: a channel per uid, named in the push URL (several: comma-separated, one
        # request); the raw body is the event's data.
        "nginx-nchan": Server(
            "nginx-nchan", port_base + 2, DATA_TEMPLATE, ["Content-Type: text/plain"],
            unicast=Addressing(
                f"http://127.0.0.1:{port_base + 2}/events?uid=c{{client}}",
                f"http://127.0.0.1:{port_base + 2}/push?uid={{uids:c}}",
                DATA_TEMPLATE, ["Content-Type: text/plain"],
            ),
        ),
    }


# ---------------------------------------------------------------------------------------------
# Processes


class Processes:
    """The processes this script started; `stop_all` ends each one's process group by its id."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:
        # Its own session (and so process group): Ctrl+C in the terminal reaches only this script,
        # which then stops the group, nginx's master and worker alike.
        process = subprocess.Popen(argv, start_new_session=True, preexec_fn=raise_nofile, **kwargs)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen, grace: float = 5.0) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=grace)
        else:
            # The leader is gone; a child of it (nginx's worker) may not be.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process)


def raise_nofile() -> None:
    """Children may open as many files as the hard limit allows (10,000 clients need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before accepting")
        if port_accepts(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not accept within {timeout:.0f} s")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the ppid follows the state.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_secs() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), all processes together."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def process_cpu_secs(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def other_load(seconds: float = 1.0) -> float:
    """How many cores the rest of the machine keeps busy, sampled over `seconds`."""
    start = machine_busy_secs()
    time.sleep(seconds)
    return (machine_busy_secs() - start) / seconds


def wait_for_quiet(limit: float, threshold: float = 0.15) -> float:
    """Waits (at most `limit` seconds) until other processes use less than `threshold` of a core;
    returns the last load seen."""
    deadline = time.monotonic() + limit
    load = other_load()
    announced = False
    while load > threshold and time.monotonic() < deadline:
        if not announced:
            print(
                f"  the machine is busy ({load:.2f} cores used by other processes); "
                f"waiting up to {limit:.0f} s for it to quiet down",
                file=sys.stderr, flush=True,
            )
            announced = True
        time.sleep(2)
        load = other_load()
    return load


def work_pid(server: Server, process: subprocess.Popen, timeout: float = 5.0) -> int:
    """The pid that does the work: the process itself, or nginx's only worker."""
    if server.name != "nginx-nchan":
        return process.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = children_of(process.pid)
        if len(workers) == 1:
            return workers[0]
        time.sleep(0.05)
    raise RuntimeError(f"nginx's master {process.pid} has no single worker: {children_of(process.pid)}")


def start_server(
    server: Server, paths: dict[str, Path], procs: Processes, logdir: Path, label: str,
    mode: str = "broadcast",
) -> tuple[subprocess.Popen, int, Path]:
    """Starts `server` pinned to core 0 and waits until it accepts; returns it, the pid that does
    the work and its temp dir (remove it after stopping the server)."""
    if port_accepts(server.port):
        raise RuntimeError(
            f"something already listens on 127.0.0.1:{server.port}; stop it or pick --port-base"
        )
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{server.name}-"))
    # DEMO_BROADCAST=0: the hub's example sends no demo broadcast of its own during a run.
    env = dict(os.environ, PORT=str(server.port), RUST_LOG="warn", DEMO_BROADCAST="0")
    # The hub's example keeps history on disk with DATA_DIR: only for ssehub-store, in its temp dir.
    env.pop("DATA_DIR", None)
    env.pop("BATCH_DELAY_MS", None)
    if server.name == "ssehub-store":
        env["DATA_DIR"] = str(workdir / "data")
    if server.name == "ssehub-batched":
        env["BATCH_DELAY_MS"] = str(BATCH_DELAY_MS)
    argv = ["taskset", "-c", "0", *server.command(paths, workdir, mode)]
    process = None
    try:
        with open(logdir / f"{label}.log", "wb") as log:
            process = procs.start(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_for_port(server.port, process)
        return process, work_pid(server, process), workdir
    except BaseException:
        if process is not None:
            procs.stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# Build


def cargo_target_dir() -> Path:
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]).resolve()
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return Path(json.loads(meta.stdout)["target_directory"])


def build(skip: bool) -> dict[str, Path]:
    if not skip:
        for argv in (
            ["cargo", "build", "--release", "-p", "ssehub", "-p", "axum-broadcast", "-p",
             "axum-unicast"],
            ["cargo", "build", "--release", "-p", "ssehub-hub", "--example", "server"],
        ):
            print("+", " ".join(argv), file=sys.stderr, flush=True)
            subprocess.run(argv, cwd=ROOT, check=True)
    release = cargo_target_dir() / "release"
    return {
        "generator": release / "ssehub",
        "ssehub-server": release / "examples" / "server",
        "axum-broadcast": release / "axum-broadcast",
        "axum-unicast": release / "axum-unicast",
    }


def check_generator(generator: Path) -> None:
    help_text = subprocess.run(
        [str(generator), "bench", "--help"], capture_output=True, text=True
    )
    if help_text.returncode != 0 or "--sse-url" not in help_text.stdout:
        sys.exit(
            f"error: {generator} has no `bench` subcommand yet (`ssehub bench --help` failed);"
            " build it from main (cargo build --release -p ssehub) or give --generator"
        )


# ---------------------------------------------------------------------------------------------
# One run


def scaled_clients(args: argparse.Namespace, scenario: Scenario) -> int:
    """The scenario's clients times --scale (at least 1, and at least K of a uni-cast push)."""
    return max(round(scenario.clients * args.scale), scenario.uids_per_push, 1)


def run_generator(
    args: argparse.Namespace, generator: Path, server: Server, scenario: Scenario, pid: int,
    procs: Processes, log_path: Path, rate: int,
) -> tuple[dict | None, dict, str]:
    unicast = server.unicast if scenario.mode == "unicast" else None
    argv = [
        "taskset", "-c", "1", str(generator), "bench",
        "--sse-url", unicast.sse_url if unicast else server.sse_url(),
        "--clients", str(scaled_clients(args, scenario)),
        "--rate", str(rate),
        "--duration", str(args.duration),
        "--warmup", str(args.warmup),
        "--server-pid", str(pid),
        "--threads", str(args.generator_threads),
    ]
    if rate > 0:
        if unicast:
            argv += ["--push-url", unicast.push_url, "--body", unicast.body,
                     "--uids-per-push", str(scenario.uids_per_push)]
            headers = unicast.headers
        else:
            argv += ["--push-url", server.push_url(), "--body", server.body]
            headers = server.headers
        for header in headers:
            argv += ["-H", header]
    argv += args.generator_arg
    # CPU use during the run: the generator's (what the children reaped meanwhile used: the
    # generator is the only child reaped during this call; the server is reaped after it), the
    # server's, and the whole machine's; the rest is other processes' load, i.e. noise.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, server_before = machine_busy_secs(), process_cpu_secs(pid)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = procs.start(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        limit = args.duration + args.warmup + 180
        try:
            out, _ = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            procs.stop(process)
            return None, {}, f"the generator did not finish within {limit} s"
    procs.running.remove(process)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_secs() - busy_before
    server_cpu = process_cpu_secs(pid) - server_before
    generator_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    load = {
        "generator_cpu_share": round(generator_cpu / wall, 3) if wall > 0 else None,
        "others_cores": round(max(0.0, busy - server_cpu - generator_cpu) / wall, 3)
        if wall > 0 else None,
    }
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        # A uni-cast run that lost or misdelivered events exits 1 after its JSON line: kept, for
        # the record (the run still counts as failed).
        result = json.loads(lines[-1]) if lines else None
        return result, load, f"the generator exited with {process.returncode}: {' | '.join(tail)}"
    return json.loads(lines[-1]), load, ""


# ---------------------------------------------------------------------------------------------
# Smoke test: one subscriber, one push, per server (no generator needed)


def subscribe(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A raw subscriber: sends the GET, reads the response head, checks for a 200."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    seen = b""
    while b"\r\n\r\n" not in seen:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise RuntimeError(f"subscriber closed: {seen!r}")
        seen += chunk
    head = seen.split(b"\r\n", 1)[0]
    if b" 200 " not in head:
        sock.close()
        raise RuntimeError(f"subscriber got {head!r}")
    return sock, seen


def has_event(seen: bytes, seq: int, ts: int) -> bytes | None:
    """The `data:` line of push `seq` stamped `ts`, if `seen` has it."""
    for line in seen.split(b"\n"):
        if line.startswith(b"data:"):
            if re.findall(rb"\d+", line)[:2] == [str(seq).encode(), str(ts).encode()]:
                return line
    return None


def read_for(sock: socket.socket, seen: bytes, until, secs: float) -> bytes:
    """Reads into `seen` until `until(seen)` or `secs` pass; returns what was seen."""
    deadline = time.monotonic() + secs
    while not until(seen) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        if not chunk:
            break
        seen += chunk
    return seen


def url_path(url: str) -> str:
    """The path and query of an http:// URL."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def smoke(server: Server, mode: str = "broadcast", seq: int = 7) -> str:
    """Subscribes with a raw socket, pushes one event, checks that its data comes back. Uni-cast:
    subscribes clients 1 and 2, pushes to client 1 only, and checks that 2 does not get it."""
    ts = time.time_ns()
    unicast = server.unicast if mode == "unicast" else None
    if unicast:
        # As `ssehub bench` renders them for client 1: `{uid}` is 1, `{uids:c}` is "c1" in a body
        # and c1 in a URL.
        def render(text: str, url: bool) -> str:
            text = re.sub(r"\{uids:([^{}]*)\}", (r"\g<1>1" if url else r'"\g<1>1"'), text)
            text = text.replace("{uids}", "1" if url else '"1"').replace("{uid}", "1")
            return text.replace("{seq}", str(seq)).replace("{ts}", str(ts))

        paths = [url_path(unicast.sse_url).replace("{client}", str(i)) for i in (1, 2)]
        push_path = render(url_path(unicast.push_url), True)
        body = render(unicast.body, False)
        headers = dict(h.split(": ", 1) for h in unicast.headers)
    else:
        paths = ["/events"]
        push_path = "/push"
        body = server.body.replace("{seq}", str(seq)).replace("{ts}", str(ts))
        headers = dict(h.split(": ", 1) for h in server.headers)
    subscribers = []
    try:
        for path in paths:
            subscribers.append(list(subscribe(server.port, path)))
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("POST", push_path, body=body.encode(), headers=headers)
        answer = connection.getresponse()
        answer.read()
        connection.close()
        if not 200 <= answer.status < 300:
            raise RuntimeError(f"push answered {answer.status}")
        sock, seen = subscribers[0]
        seen = read_for(sock, seen, lambda seen: has_event(seen, seq, ts), 5)
        line = has_event(seen, seq, ts)
        if line is None:
            raise RuntimeError(f"the event did not arrive; got {seen[-300:]!r}")
        verdict = f"push {answer.status}, event delivered: {line[:60].decode()}..."
        if unicast:
            other, other_seen = subscribers[1]
            other_seen = read_for(other, other_seen, lambda seen: has_event(seen, seq, ts), 0.5)
            if has_event(other_seen, seq, ts):
                raise RuntimeError("client 2 got the push for client 1")
            verdict = f"uni-cast {push_path}: {verdict}; not to another uid"
        return verdict
    finally:
        for sock, _ in subscribers:
            sock.close()


# ---------------------------------------------------------------------------------------------
# Report


def source_revision() -> str:
    """The commit the binaries were built from, `+dirty` if the work tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def machine_line() -> str:
    cpuinfo: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            cpuinfo.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = cpuinfo.get("model name", "unknown CPU")
    if "cpu family" in cpuinfo:
        model += f" (family {cpuinfo['cpu family']}, model {cpuinfo.get('model', '?')})"
    model += f", {platform.machine()}"
    if "hypervisor" in cpuinfo.get("flags", "").split():
        model += ", virtual machine"
    distro = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = ", " + line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = []
    for argv in (["rustc", "--version"], ["nginx", "-v"]):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            versions.append((done.stdout or done.stderr).strip().replace("nginx version: ", ""))
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        nchan = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        if nchan:
            versions.append(f"nchan {nchan}")
    except (OSError, subprocess.TimeoutExpired):
        pass
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{model}, {os.cpu_count()} cores{mem}, Linux {platform.release()}{distro}, "
        f"{'; '.join(versions)}, {date}"
    )


def si(value: float | None) -> str:
    if value is None:
        return "–"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale * 0.9995:  # 999.6k prints as 1M, not 1e+03k
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.3g} ms"


def kib(value: float | None) -> str:
    return "–" if value is None else f"{value / 1024:.1f} KiB"


def cores(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "–"
    value = ours / theirs
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.2g}×"


def metrics(record: dict) -> dict[str, float | None]:
    """The figures of one run that the table shows."""
    result = record.get("result") or {}
    server = result.get("server") or {}
    latency = result.get("latency_ms") or {}
    expected = result.get("deliveries_expected") or 0
    # The generator's CPU window (first push to last delivery), else the nominal duration.
    window = result.get("window_secs") or record["duration"]
    rate = record["rate"]
    if "generator_cpu_secs" in result and window:
        generator_cpu = result["generator_cpu_secs"] / window
    else:
        generator_cpu = record.get("generator_cpu_share")
    return {
        "efficiency": server.get("efficiency") if rate else None,
        "delivered": result.get("deliveries_per_sec") if rate else None,
        "p99": latency.get("p99") if rate else None,
        "loss": (result.get("lost", 0) / expected) if rate and expected else None,
        "push_errors": (result.get("push_errors", 0) / result["pushes_sent"])
        if rate and result.get("pushes_sent") else None,
        "bytes": server.get("bytes_per_connection"),
        "server_cpu": (server["cpu_secs"] / window) if "cpu_secs" in server else None,
        "generator_cpu": generator_cpu,
        "others": record.get("others_cores"),
        "connected": result.get("clients_connected"),
    }


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def span(values: list[float | None], fmt) -> str:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return ""
    return f" ({fmt(min(present))}–{fmt(max(present))})"


def loss(value: float | None) -> str:
    if value is None:
        return "–"
    return "0" if value == 0 else f"{value * 100:.2g}%"


def report(
    records: list[dict], scenarios: list[Scenario], servers: list[str], machine: str,
    source: str = "unknown",
) -> str:
    """The markdown table of medians, with the ratio rows of ssehub against each baseline."""
    lines = [
        f"Machine: {machine}",
        f"Source: {source} (the checkout run.py built from; with --no-build, the checkout at the time)",
        "",
        "| scenario | server | efficiency (deliveries/CPU-s) | delivered/s | p99 | lost "
        "| pushes failed | memory/conn (PSS) | server CPU | generator CPU | other load | clients "
        "| runs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    searches: list[str] = []
    for scenario in scenarios:
        if scenario.search:
            searches += search_table(records, scenario, servers)
            continue
        medians: dict[str, dict[str, float | None]] = {}
        for name in servers:
            runs = [r for r in records if r["scenario"] == scenario.key and r["server"] == name]
            if not runs:
                continue
            ok = [metrics(r) for r in runs if r.get("result") and "error" not in r]
            if not ok:
                error = runs[-1].get("error", "?").replace("|", "/")
                lines.append(
                    f"| {scenario.title} | {name} | failed: {error} | | | | | | | | | | 0/{len(runs)} |"
                )
                continue
            m = {key: median([x[key] for x in ok]) for key in ok[0]}
            medians[name] = m
            cells = [
                si(m["efficiency"]) + span([x["efficiency"] for x in ok], si),
                si(m["delivered"]),
                ms(m["p99"]) + span([x["p99"] for x in ok], ms),
                loss(m["loss"]),
                loss(m["push_errors"]),
                kib(m["bytes"]),
                pct(m["server_cpu"]),
                pct(m["generator_cpu"]),
                cores(max((x["others"] for x in ok if x["others"] is not None), default=None)),
                si(m["connected"]),
                f"{len(ok)}/{len(runs)}",
            ]
            lines.append(f"| {scenario.title} | {name} | " + " | ".join(cells) + " |")
        ours = medians.get("ssehub")
        if not ours:
            continue
        for name, theirs in medians.items():
            if name == "ssehub":
                continue
            cells = [
                ratio(ours["efficiency"], theirs["efficiency"]),
                ratio(ours["delivered"], theirs["delivered"]),
                ratio(ours["p99"], theirs["p99"]),
                "",
                "",
                ratio(ours["bytes"], theirs["bytes"]),
                "", "", "", "", "",
            ]
            lines.append(f"| {scenario.title} | *ssehub ÷ {name}* | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Medians of the runs, (min–max) where there are several. Efficiency: deliveries per second "
        "of server CPU time (higher is better). Delivered/s: events received by all clients per "
        "second. p99: 99th percentile of publish-to-receive latency. Lost: share of the expected "
        "deliveries (acknowledged pushes x clients) that never arrived. Pushes failed: share of the "
        "pushes sent that the server refused or did not answer in time (they count in no other "
        "column). Memory/conn: growth of the server's PSS per connection. "
        "Server CPU: the server's CPU time over the measured window, as a share of one core; the "
        "generator's (near 100% = that side was the bottleneck). Other load: the most cores that "
        "other processes on the machine kept busy during a run (noise; near 0 is a clean run). "
        "Ratio rows: ssehub ÷ baseline (efficiency, delivered/s: above 1 is better; p99, memory: "
        "below 1 is better).",
    ]
    if all(scenario.search for scenario in scenarios):
        # Only searches: their own table, after the machine and source lines.
        lines = lines[:2]
    return "\n".join(lines + searches)


def search_verdict(record: dict, p99_limit: float) -> str:
    """Why a step of a search failed, or "" if it passed: an error (the generator fails a
    uni-cast run on any loss, misdelivery or duplicate), a push refused, unanswered or not sent,
    or a p99 over the bound."""
    result = record.get("result")
    if "error" in record or not result:
        return record.get("error", "no result")
    for key in ("lost", "misdelivered", "duplicates", "push_errors"):
        if result.get(key):
            return f"{result[key]} {key.replace('_', ' ')}"
    if result.get("pushes_sent", 0) < result.get("pushes_planned", 0):
        return f"{result.get('pushes_sent')} of {result.get('pushes_planned')} pushes sent"
    p99 = (result.get("latency_ms") or {}).get("p99")
    if p99 is None or p99 > p99_limit:
        return f"p99 {ms(p99)} > {ms(p99_limit)}"
    return ""


def search_table(records: list[dict], scenario: Scenario, servers: list[str]) -> list[str]:
    """The table of a search scenario (umax): per server, the highest rate that passed (median
    over the runs), the figures of that step, and where and why each run's search stopped."""
    # A step tried again (p99 over on the first attempt) counts by its second attempt.
    steps = [
        r for r in records
        if r["scenario"] == scenario.key and "search" in r and not r["search"].get("superseded")
    ]
    if not steps:
        return []
    limit = steps[0]["search"]["p99_limit"]
    top = max(steps[0]["search"].get("ladder") or [r["search"]["rate"] for r in steps])
    lines = [
        "",
        f"{scenario.title}: the highest rate of the ladder that every step up to it passed with "
        f"p99 <= {ms(limit)} and nothing lost, misdelivered, refused or unsent (≥: the ladder's "
        f"top, {si(top)}/s, passed too: the limit is higher). Figures of that step, medians of "
        "the runs.",
        "",
        "| server | highest rate (pushes/s) | p99 there | delivered/s there | server CPU there "
        "| generator CPU there | stopped at | runs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    best: dict[str, float | None] = {}
    for name in servers:
        mine = [r for r in steps if r["server"] == name]
        if not mine:
            continue
        runs = sorted({r["run"] for r in mine})
        rates, passed_steps, stops = [], [], []
        for run in runs:
            ladder = sorted((r for r in mine if r["run"] == run), key=lambda r: r["search"]["rate"])
            passed = [r for r in ladder if r["search"]["passed"]]
            failed = [r for r in ladder if not r["search"]["passed"]]
            rates.append(passed[-1]["search"]["rate"] if passed else 0)
            if passed:
                passed_steps.append(metrics(passed[-1]))
            if failed:
                why = failed[0]["search"]["why"].replace("|", "/")[:80]
                stops.append(f"{si(failed[0]['search']['rate'])}/s: {why}")
            else:
                stops.append("–")
        rate = median(rates)
        best[name] = rate
        at_top = all(r == top for r in rates)
        cells = [
            ("≥ " if at_top else "") + si(rate) + (span(rates, si) if len(set(rates)) > 1 else ""),
            ms(median([m["p99"] for m in passed_steps])),
            si(median([m["delivered"] for m in passed_steps])),
            pct(median([m["server_cpu"] for m in passed_steps])),
            pct(median([m["generator_cpu"] for m in passed_steps])),
            "; ".join(stops),
            str(len(runs)),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ours = best.get("ssehub")
    for name, theirs in best.items():
        if name != "ssehub" and ours is not None:
            lines.append(f"| *ssehub ÷ {name}* | {ratio(ours, theirs)} | | | | | | |")
    return lines


# ---------------------------------------------------------------------------------------------
# Main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario and server (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before measuring (default 2)")
    parser.add_argument("--servers", default="ssehub,ssehub-store,axum-broadcast,axum-unicast,nginx-nchan",
                        help="comma-separated subset of ssehub,ssehub-store,ssehub-batched,"
                        "axum-broadcast,axum-unicast,nginx-nchan (each runs the scenarios of its modes)")
    parser.add_argument("--batch-delay-ms", type=int, default=5,
                        help="the batch delay of ssehub-batched, in ms (default 5)")
    parser.add_argument("--scenarios", default="a,b,c,d,u1,u10,umax",
                        help="comma-separated subset of a,b,c,d,u1,u10,u1x,umax")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every scenario's clients by this (e.g. 0.01 for a smoke "
                        "run; default 1)")
    parser.add_argument("--umax-rates", default=",".join(str(r) for r in UMAX_RATES),
                        help="the push rates umax tries, in order (default "
                        f"{','.join(str(r) for r in UMAX_RATES)})")
    parser.add_argument("--umax-p99", type=float, default=UMAX_P99_MS,
                        help=f"umax's latency bound: p99 in ms (default {UMAX_P99_MS:g})")
    parser.add_argument("--port-base", type=int, default=18181,
                        help="ssehub listens here, axum-broadcast on +1, nginx-nchan on +2, "
                        "ssehub-store +3, ssehub-batched +4, axum-unicast +5")
    parser.add_argument("--generator", type=Path, help="the ssehub binary with `bench` (default: the one built)")
    parser.add_argument("--generator-threads", type=int, default=1,
                        help="--threads for the generator (default 1: it has one core)")
    parser.add_argument("--generator-arg", action="append", default=[],
                        help="an extra argument for `ssehub bench` (repeat for several)")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="before each run, wait up to this many seconds until other processes "
                        "use under 0.15 of a core (default 60; 0 = do not wait)")
    parser.add_argument("--no-build", action="store_true", help="use the binaries already built")
    parser.add_argument("--smoke", action="store_true",
                        help="only check that each server delivers one push to one subscriber")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="folder for the results")
    parser.add_argument("--report", type=Path, metavar="JSONL",
                        help="only print the table of an earlier run's results file")
    args = parser.parse_args()
    args.server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenario_keys = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.server_names if s not in make_servers(0)] + [
        s for s in args.scenario_keys if s not in SCENARIOS
    ]
    if unknown:
        parser.error(f"unknown server or scenario: {', '.join(unknown)}")
    if args.runs < 1 or args.duration < 1:
        parser.error("--runs and --duration must be at least 1")
    if not args.scale > 0:
        parser.error("--scale must be above 0")
    try:
        args.umax_rates = [int(r) for r in args.umax_rates.split(",") if r.strip()]
    except ValueError:
        parser.error("--umax-rates must be comma-separated whole numbers")
    if not args.umax_rates or min(args.umax_rates) < 1 or args.umax_rates != sorted(args.umax_rates):
        parser.error("--umax-rates must be rates of at least 1, in increasing order")
    return args


def one_run(
    args: argparse.Namespace, paths: dict[str, Path], server: Server, scenario: Scenario, run: int,
    procs: Processes, logdir: Path, workdirs: list[Path], rate: int | None = None,
) -> dict:
    """One run: waits for a quiet machine, starts a fresh server, loads it, stops it. `rate`
    overrides the scenario's (a step of a search)."""
    rate = scenario.rate if rate is None else rate
    label = f"{scenario.key}-{server.name}-{run}" + (f"-{rate}" if scenario.search else "")
    record: dict = {
        "scenario": scenario.key, "title": scenario.title, "server": server.name, "run": run,
        "clients": scaled_clients(args, scenario), "rate": rate, "duration": args.duration,
        "warmup": args.warmup, "mode": scenario.mode,
    }
    if scenario.mode == "unicast":
        record["uids_per_push"] = scenario.uids_per_push
    if args.quiet_wait:
        record["others_before"] = round(wait_for_quiet(args.quiet_wait), 3)
    process = None
    try:
        process, pid, workdir = start_server(
            server, paths, procs, logdir, f"{label}-server", scenario.mode
        )
        workdirs.append(workdir)
        result, load, error = run_generator(
            args, paths["generator"], server, scenario, pid, procs,
            logdir / f"{label}-generator.log", rate,
        )
        record.update(result=result, **load)
        if process.poll() is not None:
            error = error or f"the server exited with {process.returncode} during the run"
        if error:
            record["error"] = error
    except RuntimeError as error:
        record["error"] = str(error)
    finally:
        if process is not None:
            procs.stop(process)
    return record


def summary(record: dict) -> str:
    """One run in a line, for the progress output."""
    if "error" in record:
        return f"error: {record['error']}"
    m = metrics(record)
    return (
        f"eff {si(m['efficiency'])}/CPU-s, {si(m['delivered'])}/s, p99 {ms(m['p99'])}, "
        f"lost {loss(m['loss'])}, pushes failed {loss(m['push_errors'])}, mem {kib(m['bytes'])}, server CPU {pct(m['server_cpu'])}, "
        f"generator CPU {pct(m['generator_cpu'])}, other load {cores(m['others'])}"
    )


def report_file(path: Path) -> str:
    """The table of a results file written by an earlier run."""
    machine = source = "unknown"
    records = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if "machine" in entry:
            machine = entry["machine"]
            source = entry.get("source", "unknown")
        elif "scenario" in entry:
            records.append(entry)
    keys = list(dict.fromkeys(r["scenario"] for r in records))
    servers = list(dict.fromkeys(r["server"] for r in records))
    return report(records, [SCENARIOS[k] for k in keys], servers, machine, source)


def main() -> int:
    args = parse_args()
    global BATCH_DELAY_MS
    BATCH_DELAY_MS = args.batch_delay_ms
    if args.report:
        print(report_file(args.report))
        return 0
    # SIGTERM ends the script like Ctrl+C does, through the `finally` that stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl+C too, even where SIGINT was inherited ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if shutil.which("taskset") is None:
        sys.exit("error: taskset (util-linux) is needed to pin the server and the generator")
    if "nginx-nchan" in args.server_names and not Path("/usr/lib/nginx/modules/ngx_nchan_module.so").exists():
        sys.exit("error: nginx-nchan is not installed: run bench/nchan/install.sh (or leave it out with --servers)")
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 cores: the server and the generator share one", file=sys.stderr)

    paths = build(args.no_build)
    if args.generator:
        paths["generator"] = args.generator.resolve()
    needed = {"generator"} if not args.smoke else set()
    needed |= {"ssehub-server"} if {"ssehub", "ssehub-store", "ssehub-batched"} & set(args.server_names) else set()
    needed |= {"axum-broadcast"} if "axum-broadcast" in args.server_names else set()
    needed |= {"axum-unicast"} if "axum-unicast" in args.server_names else set()
    missing = [str(paths[key]) for key in sorted(needed) if not paths[key].is_file()]
    if missing:
        sys.exit(
            f"error: not built: {', '.join(missing)} (run without --no-build, or set "
            "CARGO_TARGET_DIR to the target dir the binaries are in)"
        )
    servers = make_servers(args.port_base)
    procs = Processes()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.results.mkdir(parents=True, exist_ok=True)
    logdir = args.results / f"{stamp}.logs"
    logdir.mkdir()
    workdirs: list[Path] = []

    try:
        if args.smoke:
            failed = 0
            for name in args.server_names:
                server = servers[name]
                for mode in ("broadcast", "unicast"):
                    if not server.supports(mode):
                        continue
                    process, pid, workdir = start_server(
                        server, paths, procs, logdir, f"smoke-{name}-{mode}", mode
                    )
                    workdirs.append(workdir)
                    try:
                        print(f"{name} {mode} (pid {pid}, port {server.port}): {smoke(server, mode)}")
                    except Exception as error:  # noqa: BLE001 - reported, then the next server
                        failed += 1
                        print(f"{name} {mode}: FAILED: {error}")
                    finally:
                        procs.stop(process)
            return 1 if failed else 0

        check_generator(paths["generator"])
        machine = machine_line()
        source = source_revision()
        results_path = args.results / f"{stamp}.jsonl"
        print(f"Machine: {machine}\nSource: {source}", file=sys.stderr)
        print(f"results: {results_path}, logs: {logdir}", file=sys.stderr)
        scenarios = [SCENARIOS[k] for k in args.scenario_keys]
        records: list[dict] = []
        with open(results_path, "w") as out:
            out.write(
                json.dumps({"machine": machine, "source": source, "args": sys.argv[1:]}) + "\n"
            )
            def keep(record: dict, label: str, note: str = "") -> None:
                records.append(record)
                out.write(json.dumps(record) + "\n")
                out.flush()
                print(f"[{label}] {note}{summary(record)}", file=sys.stderr, flush=True)

            for scenario in scenarios:
                names = [n for n in args.server_names if servers[n].supports(scenario.mode)]
                if not names:
                    print(f"[{scenario.key}] no server of --servers has {scenario.mode}; skipped",
                          file=sys.stderr, flush=True)
                    continue
                for run in range(1, args.runs + 1):
                    if not scenario.search:
                        for name in names:
                            record = one_run(
                                args, paths, servers[name], scenario, run, procs, logdir, workdirs
                            )
                            keep(record, f"{scenario.key}-{name}-{run}")
                        continue
                    # A search: each rate in turn, for each server still in; a server leaves at
                    # its first failing rate.
                    # A step that fails on p99 alone is tried once more (a fresh server): on a
                    # shared machine one noisy moment should not end a search.
                    active = list(names)
                    for rate in args.umax_rates:
                        for name in list(active):
                            for attempt in (1, 2):
                                record = one_run(
                                    args, paths, servers[name], scenario, run, procs, logdir,
                                    workdirs, rate,
                                )
                                why = search_verdict(record, args.umax_p99)
                                again = attempt == 1 and why.startswith("p99")
                                record["search"] = {
                                    "rate": rate, "passed": not why, "why": why,
                                    "p99_limit": args.umax_p99, "ladder": args.umax_rates,
                                    "attempt": attempt,
                                    "superseded": again,
                                }
                                note = ("passed: " if not why else "p99 over, once more: "
                                        if again else f"stops here ({why}): ")
                                keep(record, f"{scenario.key}-{name}-{run}-{rate}", note)
                                if not again:
                                    break
                            if why:
                                active.remove(name)
                        if not active:
                            break
        print(report(records, scenarios, args.server_names, machine, source))
        return 0
    finally:
        procs.stop_all()
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
