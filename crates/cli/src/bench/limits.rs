//! The open-file limit: every connection is a file descriptor.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::error::BenchError;

/// Descriptors kept for everything that is not a connection: stdio, the runtime's epoll and
/// wakers, `/proc` reads, the dynamic loader's files.
pub const MARGIN: u64 = 100;

/// Raises the soft open-file limit to the hard one, then checks that `connections` fit under it
/// with [`MARGIN`] to spare. Fails up front with what to do instead of failing at the
/// 19,901st `socket()` with EMFILE.
pub fn ensure_open_files(connections: u64) -> Result<(), BenchError> {
    let limit = getrlimit(Resource::Nofile);
    let Some(mut usable) = limit.current else {
        return Ok(()); // unlimited
    };
    // An unlimited hard limit still has the kernel's ceiling (fs.nr_open, 2^20 by default).
    let target = limit.maximum.unwrap_or(1 << 20);
    if usable < target
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        )
        .is_ok()
    {
        usable = target;
    }
    let which = if Some(usable) == limit.maximum {
        "hard"
    } else {
        "soft"
    };
    let max = usable.saturating_sub(MARGIN);
    if connections > max {
        return Err(BenchError::TooManyConnections {
            max,
            limit: usable,
            which,
            asked: connections,
        });
    }
    tracing::debug!(usable, connections, "open-file limit");
    Ok(())
}
