//! A peer that really vanishes: the client sits in a network namespace of its own behind a veth
//! pair, opens its stream, then stops answering without a FIN or RST. The lean server must drop
//! it with data in flight (within 1.5 × `write_timeout`: the stream writer's watch on the
//! kernel's send queue) and idle (within about `dead_peer_timeout`: keepalive probes), and must
//! keep a client that is idle but alive. Also: the defaults, read back from a socket the server
//! accepted, bound the drop to at most 2 minutes.
//!
//! The namespace tests need root, `ip` (iproute2) and network namespaces: they run only with
//! `SSEHUB_NETNS_TESTS=1` and otherwise say they are skipped and pass. The default-options test
//! runs everywhere (Linux).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

use std::fs::File;
use std::future::IntoFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use http::StatusCode;
use ssehub_hub::server::{DEFAULT_DEAD_PEER_TIMEOUT, DEFAULT_WRITE_TIMEOUT, Server, ServerBuilder};
use ssehub_hub::{Event, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Short, so a case takes seconds: keepalive after 1 s of silence (`timeout / 2`, in whole
/// seconds), probes every 1 s, `TCP_USER_TIMEOUT` 3 s.
const TIMEOUT: Duration = Duration::from_secs(3);
/// How long past the timeout a drop may come before the test fails: the idle case drops at the
/// first probe past the timeout (1 s), and timers and polling run late on a loaded machine.
const MARGIN: Duration = Duration::from_secs(5);
/// How often the hub's connection count is looked at.
const POLL: Duration = Duration::from_millis(50);
/// Any single wait for the network (connect, a response) before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);
const UID: &str = "vanishing";

/// Whether the namespace tests may run; if not, says why.
fn netns_enabled(test: &str) -> bool {
    if std::env::var("SSEHUB_NETNS_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "{test}: SKIPPED: needs root and network namespaces (ip netns, veth); \
         set SSEHUB_NETNS_TESTS=1 to run it"
    );
    false
}

/// Runs `ip` with `args`; fails the test with its stderr.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running `ip {}`: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Runs `ip` with `args` where failing is expected or harmless (cleanup); the error is returned.
fn ip_quietly(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// What the server's sockets to `peer` look like to the kernel (state, timers, retransmits), for
/// failure messages.
fn sockets_to(peer: Ipv4Addr) -> String {
    Command::new("ss")
        .args(["-tion", "state", "all", "dst", &peer.to_string()])
        .output()
        .map_or_else(
            |error| format!("(ss failed: {error})"),
            |output| String::from_utf8_lossy(&output.stdout).into_owned(),
        )
}

/// A network namespace with a veth pair to the root namespace: `host_ip` on our side, `peer_ip`
/// inside. Dropping it deletes both, also when the test fails.
struct Netns {
    name: String,
    host_veth: String,
    peer_veth: String,
    host_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
}

impl Netns {
    /// `case` tells apart the tests of one process (they run in parallel): names carry the pid
    /// and the case, and each case gets its own /30 in a /24 picked from the pid, so that runs
    /// in other processes (other checkouts' CI) do not collide either.
    fn create(case: u8) -> Self {
        assert!(case < 64, "one /30 per case in a /24");
        let pid = std::process::id();
        let (x, y) = (64 + (pid / 256) % 192, pid % 256);
        let netns = Self {
            name: format!("ssehub-vanish-{pid}-{case}"),
            host_veth: format!("svh{pid}x{case}"),
            peer_veth: format!("svp{pid}x{case}"),
            host_ip: Ipv4Addr::new(10, x as u8, y as u8, 4 * case + 1),
            peer_ip: Ipv4Addr::new(10, x as u8, y as u8, 4 * case + 2),
        };
        // Leftovers of an earlier run that was killed with this pid: nobody else owns them.
        let _ = ip_quietly(&["link", "del", &netns.host_veth]);
        let _ = ip_quietly(&["netns", "del", &netns.name]);
        ip(&["netns", "add", &netns.name]);
        // From here on, a failure cleans up through Drop.
        ip(&[
            "link",
            "add",
            &netns.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &netns.peer_veth,
            "netns",
            &netns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.host_ip),
            "dev",
            &netns.host_veth,
        ]);
        ip(&["link", "set", &netns.host_veth, "up"]);
        ip(&[
            "-n",
            &netns.name,
            "addr",
            "add",
            &format!("{}/30", netns.peer_ip),
            "dev",
            &netns.peer_veth,
        ]);
        ip(&["-n", &netns.name, "link", "set", &netns.peer_veth, "up"]);
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// A TCP connection to `server` from inside the namespace. A thread of ours enters the
    /// namespace only to create the socket: a socket belongs to the namespace it was made in,
    /// whichever thread uses it afterwards, and the thread ends with the namespace.
    fn connect(&self, server: SocketAddr) -> TcpStream {
        let path = format!("/var/run/netns/{}", self.name);
        let socket = std::thread::spawn(move || {
            let netns = File::open(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
            rustix::thread::move_into_link_name_space(
                netns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|error| panic!("setns({path}): {error}"));
            std::net::TcpStream::connect_timeout(&server, PATIENCE)
                .unwrap_or_else(|error| panic!("connecting to {server} from {path}: {error}"))
        })
        .join()
        .unwrap();
        // Closed with a reset, so the socket is gone at once: a FIN that could never be
        // acknowledged would keep it (and the namespace) for minutes after the test.
        socket2::SockRef::from(&socket)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        socket.set_nonblocking(true).unwrap();
        TcpStream::from_std(socket).unwrap()
    }

    /// The peer stops answering, without a FIN or RST: its address is taken away inside the
    /// namespace. Our packets still leave over a link that stays up, to a neighbour entry that
    /// stays valid, and reach the peer's kernel, which no longer owns the address and (not
    /// forwarding) discards them without a word: from our side, a peer gone somewhere beyond
    /// the link. (`ip link set <peer> down` would also silence it, but our end would lose its
    /// carrier, a local signal a server never gets when a phone vanishes; `tc netem` is not in
    /// every kernel, this one's included.)
    fn vanish(&self) {
        ip(&[
            "-n",
            &self.name,
            "addr",
            "del",
            &format!("{}/30", self.peer_ip),
            "dev",
            &self.peer_veth,
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of the pair deletes both. Done explicitly: a namespace is only freed
        // when nothing refers to it any more, and `ip netns del` only removes its name.
        if let Err(error) = ip_quietly(&["link", "del", &self.host_veth]) {
            eprintln!("cleanup: ip link del {}: {error}", self.host_veth);
        }
        if let Err(error) = ip_quietly(&["netns", "del", &self.name]) {
            eprintln!("cleanup: ip netns del {}: {error}", self.name);
        }
    }
}

/// A hub without heartbeats (only what a test pushes, and keepalive probes, cross the link),
/// served on `addr` with `configure` applied to the server.
async fn serve(addr: SocketAddr, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Served {
    let hub = Hub::builder().heartbeat(None).build().unwrap();
    let server = configure(Server::builder(hub.clone(), |_: &http::request::Parts| {
        std::future::ready(Ok::<_, StatusCode>(UID.to_owned()))
    }))
    .build()
    .unwrap();
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|error| panic!("binding {addr}: {error}"));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener).into_future());
    Served { addr, hub }
}

struct Served {
    addr: SocketAddr,
    hub: Hub,
}

/// Sends the stream's GET on `socket` and reads up to the opening `:ok`: the stream is open.
async fn open_stream(socket: &mut TcpStream) {
    socket
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&received);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            if body.starts_with(":ok\n") {
                return;
            }
        }
        let mut buf = [0; 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, socket.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no opening `:ok` within {PATIENCE:?}: {text:?}"))
            .unwrap();
        assert!(n > 0, "the server closed the stream before `:ok`: {text:?}");
        received.extend_from_slice(&buf[..n]);
    }
}

/// Waits until the hub counts `connections` streams; fails after [`PATIENCE`].
async fn wait_for_connections(hub: &Hub, connections: usize) {
    let deadline = Instant::now() + PATIENCE;
    while hub.stats().connections != connections {
        assert!(
            Instant::now() < deadline,
            "the hub counts {} connections, not {connections}, after {PATIENCE:?}",
            hub.stats().connections
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for the hub to drop its one stream, from `since`; fails past [`TIMEOUT`] +
/// [`MARGIN`]. Returns how long the drop took.
async fn wait_for_drop(hub: &Hub, since: Instant, peer: Ipv4Addr) -> Duration {
    let deadline = since + TIMEOUT + MARGIN;
    loop {
        if hub.stats().connections == 0 {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the vanished peer is still connected {:?} after it vanished \
             (dead_peer_timeout {TIMEOUT:?}); the server's socket:\n{}",
            since.elapsed(),
            sockets_to(peer)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Checks for `period` that the hub keeps its one stream (to `peer`, for the failure message).
async fn stays_connected(hub: &Hub, period: Duration, peer: Ipv4Addr) {
    let since = Instant::now();
    while since.elapsed() < period {
        assert_eq!(
            hub.stats().connections,
            1,
            "a live idle client was dropped after {:?} (dead_peer_timeout {TIMEOUT:?}); \
             the server's socket:\n{}",
            since.elapsed(),
            sockets_to(peer)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A drop well before the timeout would mean something else cut the stream (or the timeout is
/// shorter than configured). Half the timeout: the idle case can legitimately drop up to one
/// keepalive idle period (1 s) early, since the kernel counts from the last acknowledgement.
fn assert_not_early(elapsed: Duration, case: &str) {
    assert!(
        elapsed >= TIMEOUT / 2,
        "{case}: dropped after {elapsed:?}, before half of dead_peer_timeout ({TIMEOUT:?})"
    );
}

/// A peer vanishes while the server has events for it in flight: the retransmissions go
/// unacknowledged, and the stream writer's watch on the send queue (nothing taken within the
/// write timeout) ends the connection. (An event stream's socket has no `TCP_USER_TIMEOUT`: the
/// kernel would also end a live reader's shut window with it, silently.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_peer_with_data_in_flight_is_dropped() {
    if !netns_enabled("a_vanished_peer_with_data_in_flight_is_dropped") {
        return;
    }
    let netns = Netns::create(0);
    let served = serve(SocketAddr::from((netns.host_ip, 0)), |builder| {
        builder
            .dead_peer_timeout(Some(TIMEOUT))
            .write_timeout(TIMEOUT)
    })
    .await;
    let mut client = netns.connect(served.addr);
    open_stream(&mut client).await;
    wait_for_connections(&served.hub, 1).await;

    // Taken first: a slow `ip` can make the drop look later, never earlier, than it was.
    let since = Instant::now();
    netns.vanish();
    for n in 0..5 {
        let receipt = served
            .hub
            .push([UID], [Event::new(format!("into the void {n}"))])
            .await
            .unwrap();
        assert_eq!(receipt.connections, 1, "the push reached the stream");
    }
    let elapsed = wait_for_drop(&served.hub, since, netns.peer_ip).await;
    eprintln!(
        "data in flight: dropped {elapsed:?} after the peer vanished \
         (write_timeout {TIMEOUT:?})"
    );
    assert_not_early(elapsed, "data in flight");
    drop(client); // kept open until now: the peer never closed anything
}

/// A peer vanishes while its stream is idle (no heartbeat, nothing pushed): only keepalive
/// probes can find out, and their going unanswered ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_idle_peer_is_dropped() {
    if !netns_enabled("a_vanished_idle_peer_is_dropped") {
        return;
    }
    let netns = Netns::create(1);
    let served = serve(SocketAddr::from((netns.host_ip, 0)), |builder| {
        builder.dead_peer_timeout(Some(TIMEOUT))
    })
    .await;
    let mut client = netns.connect(served.addr);
    open_stream(&mut client).await;
    wait_for_connections(&served.hub, 1).await;
    // Idle for a while first, so that the peer has been answering probes (the kernel counts
    // from the last answer) when it vanishes, as a client idle on a stream would have.
    stays_connected(&served.hub, TIMEOUT, netns.peer_ip).await;

    // Taken first: a slow `ip` can make the drop look later, never earlier, than it was.
    let since = Instant::now();
    netns.vanish();
    let elapsed = wait_for_drop(&served.hub, since, netns.peer_ip).await;
    eprintln!("idle: dropped {elapsed:?} after the peer vanished (dead_peer_timeout {TIMEOUT:?})");
    assert_not_early(elapsed, "idle");
    drop(client);
}

/// The control: a client that is there but idle for more than twice the timeout keeps its
/// stream (it acknowledges the probes), and an event pushed afterwards reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_peer_that_answers_probes_stays() {
    if !netns_enabled("an_idle_peer_that_answers_probes_stays") {
        return;
    }
    let netns = Netns::create(2);
    let served = serve(SocketAddr::from((netns.host_ip, 0)), |builder| {
        builder.dead_peer_timeout(Some(TIMEOUT))
    })
    .await;
    let mut client = netns.connect(served.addr);
    open_stream(&mut client).await;
    wait_for_connections(&served.hub, 1).await;

    // Nothing is written for 2 × timeout + 1 s: a cut would show within it (see the cases
    // above), so staying connected the whole time is the result, not a guess.
    let idle = 2 * TIMEOUT + Duration::from_secs(1);
    stays_connected(&served.hub, idle, netns.peer_ip).await;

    served
        .hub
        .push([UID], [Event::new("still here")])
        .await
        .unwrap();
    let mut received = Vec::new();
    while !received.ends_with(b"data: still here\n\n") {
        let mut buf = [0; 1024];
        let n = tokio::time::timeout(PATIENCE, client.read(&mut buf))
            .await
            .expect("the event pushed after the idle time arrives")
            .unwrap();
        assert!(
            n > 0,
            "the stream ended: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    }
    assert_eq!(served.hub.stats().connections, 1);
    eprintln!("control: a live idle client stayed for {idle:?} (dead_peer_timeout {TIMEOUT:?})");
}

/// Linux's keepalive timer (`tcp_keepalive_timer`): the first probe after `idle` of silence,
/// then one every `interval`; the connection ends at the first probe time past
/// `TCP_USER_TIMEOUT` with at least one probe unanswered, or without a user timeout after
/// `retries` unanswered probes. The latest an idle vanished peer is dropped.
fn idle_drop_bound(
    idle: Duration,
    interval: Duration,
    retries: u32,
    user_timeout: Option<Duration>,
) -> Duration {
    match user_timeout {
        Some(timeout) => {
            let past_idle = timeout.saturating_sub(idle);
            let probes = past_idle
                .as_nanos()
                .div_ceil(interval.as_nanos().max(1))
                .max(1);
            idle + interval * u32::try_from(probes).unwrap()
        }
        None => idle + interval * retries,
    }
}

/// The accepted socket whose local address is `local` and whose peer is `peer`, found among
/// this process's descriptors (the server runs in it) and duplicated with `pidfd_getfd`, which
/// needs no unsafe code and holds the socket open while it is read. `None` (said why) where
/// `pidfd_getfd` is refused outright: before Linux 5.6, or a container's seccomp filter.
fn accepted_socket(local: SocketAddr, peer: SocketAddr) -> Option<OwnedFd> {
    let refused = |error| {
        eprintln!(
            "the_default_drops_a_vanished_peer_within_two_minutes: SKIPPED: pidfd_getfd \
             refused ({error}), so the server's socket cannot be read back"
        );
    };
    let pidfd = match rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    ) {
        Ok(pidfd) => pidfd,
        Err(error) => {
            refused(error);
            return None;
        }
    };
    // Our own stdin, stdout or stderr: if even that fails, the call is refused as such.
    if let Err(error) =
        rustix::process::pidfd_getfd(&pidfd, 2, rustix::process::PidfdGetfdFlags::empty())
    {
        refused(error);
        return None;
    }
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // It may have been closed since it was listed.
        let Ok(socket) =
            rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        else {
            continue;
        };
        let addresses = {
            let socket = socket2::SockRef::from(&socket);
            (socket.local_addr(), socket.peer_addr())
        };
        if let (Ok(ours), Ok(theirs)) = addresses
            && ours.as_socket() == Some(local)
            && theirs.as_socket() == Some(peer)
        {
            return Some(socket);
        }
    }
    panic!("no socket of this process is {local} <- {peer}");
}

/// Without `dead_peer_timeout` or `write_timeout` set, a vanished peer is dropped within 2
/// minutes, idle or with data in flight; the kernel's own defaults would never drop an idle one
/// and retry data for about 15 minutes. Idle: the keepalive options read back from an event
/// stream's socket. With data in flight: the stream writer's watch, within 1.5 × the write
/// timeout (the stream's socket has no `TCP_USER_TIMEOUT`, read back too).
#[tokio::test]
async fn the_default_drops_a_vanished_peer_within_two_minutes() {
    let served = serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), |builder| {
        builder
    })
    .await;
    let mut client = TcpStream::connect(served.addr).await.unwrap();
    open_stream(&mut client).await; // the server has accepted it and set its options
    let Some(socket) = accepted_socket(served.addr, client.local_addr().unwrap()) else {
        return;
    };
    let socket = socket2::SockRef::from(&socket);

    let bound = Duration::from_secs(120);
    assert!(socket.keepalive().unwrap(), "keepalive is on");
    let idle = socket.tcp_keepalive_time().unwrap();
    let interval = socket.tcp_keepalive_interval().unwrap();
    let retries = socket.tcp_keepalive_retries().unwrap();
    let user_timeout = socket.tcp_user_timeout().unwrap();
    assert_eq!(
        user_timeout, None,
        "an event stream's socket has no TCP_USER_TIMEOUT"
    );
    let when_idle = idle_drop_bound(idle, interval, retries, user_timeout);
    let with_data = DEFAULT_WRITE_TIMEOUT * 3 / 2;
    eprintln!(
        "default ({DEFAULT_DEAD_PEER_TIMEOUT:?}): keepalive {idle:?} + {retries} x {interval:?}: \
         an idle vanished peer is dropped within {when_idle:?}; one with data in flight within \
         {with_data:?} (1.5 x the write timeout)"
    );
    assert!(
        with_data <= bound,
        "with data in flight the drop takes {with_data:?}"
    );
    assert!(when_idle <= bound, "idle, the drop takes {when_idle:?}");
    // And not so short that a healthy client on a slow link is cut.
    assert!(when_idle >= Duration::from_secs(10), "{when_idle:?}");
}

#[test]
fn the_idle_bound_follows_the_kernel() {
    let s = Duration::from_secs;
    // The fast cases above: probes at 1, 2, 3 s; the one at 3 s ends it.
    assert_eq!(idle_drop_bound(s(1), s(1), 4, Some(s(3))), s(3));
    // The default: probes at 30, 37, ..., 58, 65 s; 65 s is the first past 60 s.
    assert_eq!(idle_drop_bound(s(30), s(7), 4, Some(s(60))), s(65));
    // A user timeout shorter than the idle time: the first probe must go unanswered.
    assert_eq!(idle_drop_bound(s(30), s(7), 4, Some(s(10))), s(37));
    assert_eq!(idle_drop_bound(s(30), s(7), 4, None), s(58));
}
