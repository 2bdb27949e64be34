#!/usr/bin/env python3
"""Many `ssehub serve` nodes on one Redis, loaded by one generator per node (issue 15, item 4).

    python3 bench/multinode.py scale            # 5 nodes, ~100,000 subscribers, 1 broadcast/s + uni-cast
    python3 bench/multinode.py scale --nodes 2 --clients-per-node 2000 --duration 20   # a short look
    python3 bench/multinode.py hop              # 2 nodes on Redis vs 1 node in-process, same load

One process holds at most about 19,900 connections here (the open-file limit), so each node gets
its own generator (`ssehub bench --observe`), connected to it alone. One more generator publishes
a typed broadcast every second on node 0 (`--typed`: the observers count only typed events), and a
uni-cast generator subscribes each of its clients to a topic of its own on node 1 (`?topic=c{client}`,
anonymous subscribers may take `c*`) and pushes to one client's topic at a time through node 2 (so
every uni-cast push crosses Redis to reach its client, and a copy reaching any other client fails
the run). Every generator checks loss and duplicates; the script adds up deliveries, takes the
latency percentiles of each, the memory per node and per connection (PSS), each node's and Redis's
CPU seconds over the run. The Redis server is the machine's (`--redis`); a database of its own
(`--db`) is flushed before and after.

`hop` runs the same load twice: 2 nodes on Redis, each with half the clients, then 1 node with the
in-memory store (and then with the on-disk store), and reports latency and CPU per delivery.

Results go to bench/results/multinode-<time>.json (git-ignored) and to stdout as a table.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLISHER_KEY = "multinode-bench-publisher-key"
JWT_SECRET = "multinode-bench-jwt-secret-at-least-32-bytes"
TICK_BODY = '{"events":[{"event":"tick","data":"{seq} {ts}"}]}'
UNICAST_BODY = '{"topics":[{uids:c}],"events":[{"data":"{seq} {ts} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]}'


def target_dir() -> Path:
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]).resolve()
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(json.loads(meta.stdout)["target_directory"])


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"error: the server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"error: the server did not listen on port {port} within {seconds} s")


def cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def redis_pid(url: str) -> int | None:
    port = url.rsplit(":", 1)[-1].split("/")[0]
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for part in out.split("pid=")[1:]:
        return int(part.split(",")[0])
    return None


def redis_cli(url: str, db: int, *command: str) -> str:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    return subprocess.run(["redis-cli", "-h", host, "-p", port, "-n", str(db), *command],
                          capture_output=True, text=True, check=True).stdout.strip()


class Run:
    """The processes of one run, stopped (by pid) whatever happens."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        process = subprocess.Popen([str(self.binary), *argv], stdout=stdout, stderr=log,
                                   stdin=subprocess.DEVNULL, preexec_fn=raise_nofile,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def node(self, index: int, port: int, store: str, prefix: str) -> subprocess.Popen:
        argv = ["serve", "--listen", f"127.0.0.1:{port}", "--store", store,
                "--data-dir", str(self.workdir / f"node{index}"),
                "--allow-anonymous", "--anonymous-topic", "c*",
                "--publisher-key", PUBLISHER_KEY, "--jwt-secret", JWT_SECRET]
        if store.startswith("redis://"):
            argv += ["--redis-prefix", prefix]
        process = self.start(f"node{index}", argv)
        wait_for_port(port, process)
        return process

    def bench(self, name: str, argv: list[str]) -> subprocess.Popen:
        return self.start(name, ["bench", *argv], stdout=subprocess.PIPE)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def report_of(name: str, process: subprocess.Popen, workdir: Path, timeout: float) -> dict:
    out, _ = process.communicate(timeout=timeout)
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        log = (workdir / f"{name}.log").read_text()[-2000:]
        sys.exit(f"error: {name} printed no report (exit {process.returncode}):\n{log}")
    report["exit"] = process.returncode
    return report


def connections_of(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    stats = json.loads(body)
    stats = stats.get("data", stats)
    return int(stats.get("connections", 0))


def wait_connected(ports: list[int], want: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        have = [connections_of(port) for port in ports]
        if all(h >= w for h, w in zip(have, want)):
            return
        time.sleep(1)
    sys.exit(f"error: clients did not connect within {seconds} s: {have} of {want}")


def load(args: argparse.Namespace, stores: list[str], clients: list[int], label: str) -> dict:
    """One run: a node per store, `clients[i]` observers on node i, the publisher, the uni-cast."""
    binary = target_dir() / "release" / "ssehub"
    workdir = Path(tempfile.mkdtemp(prefix="ssehub-multinode-"))
    run = Run(binary, workdir)
    prefix = f"bench{int(time.time())}"
    ports = [args.port + i for i in range(len(stores))]
    redis = redis_pid(args.redis) if any(s.startswith("redis://") for s in stores) else None
    try:
        nodes = [run.node(i, port, store, prefix) for i, (port, store) in enumerate(zip(ports, stores))]
        pss_before = [pss_bytes(node.pid) for node in nodes]
        observe_secs = args.duration + args.connect_secs + 60
        pushes = int(args.rate * args.duration)
        observers = [
            run.bench(f"observe{i}", [
                "--sse-url", f"http://127.0.0.1:{port}/events", "--clients", str(n),
                "--observe", str(pushes), "--typed", "--duration", str(observe_secs),
                "--warmup", "0", "--server-pid", str(node.pid), "--threads", "1",
                "--source-ips", "250",
            ])
            for i, (port, node, n) in enumerate(zip(ports, nodes, clients))
        ]
        unicast = None
        want = list(clients)
        if args.unicast_clients and len(ports) >= 3:
            want[1] += args.unicast_clients
        wait_connected(ports, want if not args.unicast_clients else clients, args.connect_secs)
        if args.unicast_clients:
            sub, pub = (ports[1], ports[2]) if len(ports) >= 3 else (ports[0], ports[-1])
            unicast = run.bench("unicast", [
                "--sse-url", f"http://127.0.0.1:{sub}/events?topic=c{{client}}",
                "--clients", str(args.unicast_clients),
                "--push-url", f"http://127.0.0.1:{pub}/push",
                "-H", f"Authorization: Bearer {PUBLISHER_KEY}", "-H", "Content-Type: application/json",
                "--rate", str(args.unicast_rate), "--duration", str(args.duration),
                "--warmup", "5", "--body", UNICAST_BODY, "--grace", "10",
            ])
        pss_after = None
        cpu_before = [cpu_secs(node.pid) for node in nodes]
        redis_before = cpu_secs(redis) if redis else None
        started = time.monotonic()
        publisher = run.bench("publisher", [
            "--sse-url", f"http://127.0.0.1:{ports[0]}/events", "--clients", "1",
            "--push-url", f"http://127.0.0.1:{ports[0]}/push",
            "-H", f"Authorization: Bearer {PUBLISHER_KEY}", "-H", "Content-Type: application/json",
            "--rate", str(args.rate), "--duration", str(args.duration), "--warmup", "0",
            "--typed", "--body", TICK_BODY, "--grace", "10",
        ])
        time.sleep(min(5.0, args.duration / 2))
        pss_after = [pss_bytes(node.pid) for node in nodes]
        reports = {"publisher": report_of("publisher", publisher, workdir, args.duration + 120)}
        if unicast:
            reports["unicast"] = report_of("unicast", unicast, workdir, args.duration + 180)
        for i, observer in enumerate(observers):
            reports[f"observe{i}"] = report_of(f"observe{i}", observer, workdir, observe_secs + 60)
        window = time.monotonic() - started
        cpu_after = [cpu_secs(node.pid) for node in nodes]
        redis_after = cpu_secs(redis) if redis else None
    finally:
        run.stop()
    observed = [reports[f"observe{i}"] for i in range(len(nodes))]
    deliveries = sum(r["deliveries_received"] for r in observed)
    node_cpu = [after - before for before, after in zip(cpu_before, cpu_after)]
    result = {
        "label": label,
        "stores": stores,
        "clients": clients,
        "unicast_clients": args.unicast_clients,
        "broadcasts": reports["publisher"]["pushes_acked"],
        "deliveries": deliveries,
        "lost": sum(r["lost"] for r in observed),
        "duplicates": sum(r["duplicates"] for r in observed),
        "latency_ms": {f"node{i}": r["latency_ms"] for i, r in enumerate(observed)},
        "node_cpu_secs": [round(c, 2) for c in node_cpu],
        "redis_cpu_secs": round(redis_after - redis_before, 2) if redis else None,
        "window_secs": round(window, 1),
        "pss_mib": [round(p / 2**20, 1) for p in pss_after],
        "bytes_per_connection": [
            round((after - before) / max(n, 1)) for before, after, n in zip(pss_before, pss_after, clients)
        ],
        "unicast": reports.get("unicast"),
        "workdir": str(workdir),
    }
    return result


def table(result: dict) -> str:
    lines = [f"## {result['label']}",
             f"stores {result['stores']}, clients per node {result['clients']}, uni-cast clients {result['unicast_clients']}",
             f"broadcasts acked {result['broadcasts']}, deliveries {result['deliveries']:,}, lost {result['lost']}, duplicates {result['duplicates']}",
             f"node CPU s {result['node_cpu_secs']} (sum {sum(result['node_cpu_secs']):.1f}), Redis CPU s {result['redis_cpu_secs']}, window {result['window_secs']} s",
             f"PSS MiB {result['pss_mib']}, bytes/connection {result['bytes_per_connection']}"]
    for node, latency in result["latency_ms"].items():
        lines.append(f"  {node}: p50 {latency['p50']} ms, p99 {latency['p99']} ms, max {latency['max']} ms")
    if result["unicast"]:
        u = result["unicast"]
        lines.append(f"uni-cast: {u['pushes_acked']}/{u['pushes_planned']} acked, {u['deliveries_received']:,} delivered, "
                     f"lost {u['lost']}, misdelivered {u['misdelivered']}, duplicates {u['duplicates']}, "
                     f"p50 {u['latency_ms']['p50']} ms, p99 {u['latency_ms']['p99']} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["scale", "hop"])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--clients-per-node", type=int, default=19_500)
    parser.add_argument("--unicast-clients", type=int, default=2_000)
    parser.add_argument("--unicast-rate", type=float, default=200.0)
    parser.add_argument("--rate", type=float, default=1.0, help="broadcasts per second")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--connect-secs", type=float, default=300.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--db", type=int, default=9)
    parser.add_argument("--port", type=int, default=61100)
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "ssehub"], cwd=ROOT, check=True)
    redis = f"{args.redis}/{args.db}"
    results = []
    redis_cli(args.redis, args.db, "FLUSHDB")
    try:
        if args.what == "scale":
            clients = [args.clients_per_node] * args.nodes
            if args.unicast_clients and args.nodes >= 3:
                clients[1] -= args.unicast_clients
            results.append(load(args, [redis] * args.nodes, clients, f"{args.nodes} nodes on Redis"))
        else:
            total = args.clients_per_node
            half = total // 2
            results.append(load(args, [redis, redis], [half, total - half], "2 nodes on Redis"))
            redis_cli(args.redis, args.db, "FLUSHDB")
            results.append(load(args, ["memory"], [total], "1 node, memory store"))
            results.append(load(args, ["disk"], [total], "1 node, on-disk store"))
    finally:
        redis_cli(args.redis, args.db, "FLUSHDB")
    out = ROOT / "bench" / "results" / f"multinode-{args.what}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for result in results:
        print(table(result))
        print()
    print(f"results: {out}")


if __name__ == "__main__":
    main()
