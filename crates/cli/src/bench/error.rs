//! Why `ssehub bench` could not run, and the exit code of each reason.

use std::process::ExitCode;

/// A reason `ssehub bench` did not run to the end. Loss, duplicates and failed pushes are not
/// errors: they are results, reported in the JSON line.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option has a value the generator cannot use.
    #[error("{0}")]
    BadArgument(String),
    /// A URL whose host is not on the loopback network.
    #[error(
        "{url}: the host must be in 127.0.0.0/8 or be localhost (the generator sends traffic to \
         this machine only)"
    )]
    NotLoopback {
        /// The URL as given.
        url: String,
    },
    /// More connections than this process may open.
    #[error(
        "at most {max} connections per process: the open-file {which} limit here is {limit} and \
         cannot be raised; run several `ssehub bench` processes (asked for {asked})",
        max = thousands(*max),
        asked = thousands(*asked),
    )]
    TooManyConnections {
        /// Connections the generator could open (the limit minus a margin for other files).
        max: u64,
        /// The limit.
        limit: u64,
        /// `hard`, or `soft` when even the soft limit could not be raised to the hard one.
        which: &'static str,
        /// Clients plus push connections asked for.
        asked: u64,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A push connection could not be opened.
    #[error("cannot connect to the push URL {url}: {reason}")]
    PushConnect {
        /// The push URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Not one client could connect.
    #[error("no client could connect to {url}: {reason}")]
    NoClient {
        /// The SSE URL.
        url: String,
        /// The first client's error.
        reason: String,
    },
}

impl BenchError {
    /// 2 for what the user asked, 1 for what went wrong while running.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::BadArgument(_) | Self::NotLoopback { .. } | Self::TooManyConnections { .. } => {
                ExitCode::from(2)
            }
            Self::Runtime(_) | Self::PushConnect { .. } | Self::NoClient { .. } => {
                ExitCode::FAILURE
            }
        }
    }
}

/// `19900` → `19,900`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(19_900), "19,900");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_limit_message() {
        let error = BenchError::TooManyConnections {
            max: 19_900,
            limit: 20_000,
            which: "hard",
            asked: 30_004,
        };
        assert_eq!(
            error.to_string(),
            "at most 19,900 connections per process: the open-file hard limit here is 20000 and \
             cannot be raised; run several `ssehub bench` processes (asked for 30,004)"
        );
    }
}
