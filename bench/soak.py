#!/usr/bin/env python3
"""The soak test: the hub's example server with its on-disk store, under `ssehub soak`.

    python3 bench/soak.py                      # builds; 5,000 clients, 100 pushes/s, 30 minutes
    python3 bench/soak.py --duration 120 --clients 500     # a short look
    python3 bench/soak.py --plot-only docs/soak.jsonl      # redraw the plot of a run

Clients under their own uids drop their streams at random and resume with Last-Event-ID, some
read slowly, pushes mix uni-cast and broadcast (see `ssehub soak --help`). At the end the
generator checks that every client got exactly the acknowledged pushes addressed to it or to
everyone, once each, and nothing addressed to another client. The server's resident memory and
open descriptors, and the delivery latency, are sampled every 10 s; this script plots them into a
PNG (needs matplotlib: `pip install matplotlib`). Server on core 0, generator on core 1.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def target_dir() -> Path:
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]).resolve()
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(json.loads(meta.stdout)["target_directory"])


def wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"error: the server did not listen on port {port} within {seconds} s")


def pinned(core: int, argv: list[str]) -> list[str]:
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []) + argv


def plot(samples_path: Path, png: Path, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot", file=sys.stderr)
        return
    rows = [json.loads(line) for line in samples_path.read_text().splitlines() if line.strip()]
    if not rows:
        print(f"no samples in {samples_path}: no plot", file=sys.stderr)
        return
    minutes = [row["secs"] / 60 for row in rows]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    series = [
        ("server RSS (MiB)", [(row["server_rss_bytes"] or 0) / 2**20 for row in rows]),
        ("server open descriptors", [row["server_open_fds"] or 0 for row in rows]),
        ("delivery latency p99 (ms)", [row["latency_p99_ms"] or 0 for row in rows]),
        ("clients connected", [row["connected"] for row in rows]),
    ]
    for axis, (label, values) in zip(axes, series):
        axis.plot(minutes, values)
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print(f"plot: {png}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800, help="seconds of pushing (1800)")
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100, help="pushes per second (100)")
    parser.add_argument("--port", type=int, default=61100,
                        help="server port, above the ephemeral range (61100)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "soak",
                        help="where the samples (.jsonl), the verdict (.json) and the plot (.png) go")
    parser.add_argument("--history-events", type=int, default=50_000,
                        help="the example's retention in events (50,000)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--plot-only", type=Path, metavar="JSONL")
    parser.add_argument("--soak-arg", action="append", default=[],
                        help="passed to ssehub soak (--soak-arg=--drop-every --soak-arg=60)")
    args = parser.parse_args()
    if args.plot_only:
        plot(args.plot_only, args.plot_only.with_suffix(".png"), "ssehub soak")
        return
    if not args.no_build:
        for argv in (["cargo", "build", "--release", "-p", "ssehub"],
                     ["cargo", "build", "--release", "-p", "ssehub-hub", "--example", "server"]):
            subprocess.run(argv, cwd=ROOT, check=True)
    release = target_dir() / "release"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    samples = args.out.with_suffix(".jsonl")
    with tempfile.TemporaryDirectory(prefix="ssehub-soak-") as work:
        # A history of 50,000 events (about 8 minutes of pushes): the store reaches its steady
        # size within the run, so that memory can be seen to level off.
        env = dict(os.environ, DATA_DIR=str(Path(work) / "data"), PORT=str(args.port),
                   RUST_LOG="warn", HISTORY_EVENTS=str(args.history_events),
                   DEMO_BROADCAST="0")  # no demo broadcast of the example's own
        # Room for every client and the reserve: the example takes the soft limit as it is.
        server_argv = ["prlimit", f"--nofile={args.clients + 1000}", "--"] + pinned(
            0, [str(release / "examples" / "server")])
        log = open(Path(work) / "server.log", "w")
        server = subprocess.Popen(server_argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(args.port, 15)
            base = f"http://127.0.0.1:{args.port}"
            soak_argv = pinned(1, [str(release / "ssehub"), "soak",
                                   "--sse-url", base + "/events?uid={uid}",
                                   "--push-url", base + "/push",
                                   "--clients", str(args.clients), "--rate", str(args.rate),
                                   "--duration", str(args.duration),
                                   "--server-pid", str(server.pid),
                                   "--samples", str(samples)] + args.soak_arg)
            print("+", " ".join(soak_argv), file=sys.stderr, flush=True)
            run = subprocess.run(soak_argv, stdout=subprocess.PIPE, text=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
        verdict = run.stdout.strip()
        print(verdict)
        args.out.with_suffix(".json").write_text(verdict + "\n")
    minutes = args.duration / 60
    plot(samples, args.out.with_suffix(".png"),
         f"ssehub soak: {args.clients} clients, {args.rate:g} pushes/s, {minutes:g} min, on-disk store")
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
