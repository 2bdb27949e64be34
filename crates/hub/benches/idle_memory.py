"""Server memory per idle SSE connection: opens N streams to a running hub and reads the server's
PSS before and after (/proc/PID/smaps_rollup).

    cargo build --release -p ssehub-hub --example server
    RUST_LOG=warn PORT=18090 ./target/release/examples/server &
    (ulimit -n 20000; python3 crates/hub/benches/idle_memory.py $! 10000)
"""
import os, socket, sys, time

PORT = int(os.environ.get("PORT", "18090"))
pid=int(sys.argv[1]); n=int(sys.argv[2])
def pss():
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"): return int(line.split()[1])
before=pss()
socks=[]
for i in range(n):
    s=socket.create_connection(("127.0.0.1",PORT))
    s.sendall(f"GET /events?uid=u{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    socks.append(s)
for s in socks:
    data=b""
    while b":ok\n" not in data:
        data+=s.recv(4096)
time.sleep(1)
after=pss()
print(f"{n} idle connections: server PSS {before} KiB -> {after} KiB: {(after-before)*1024/n:.0f} bytes/connection")
