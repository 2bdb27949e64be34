//! A process's CPU time and memory, from `/proc` (Linux).

use std::io;
use std::path::PathBuf;

/// A process whose figures are read: the server under test, or the generator itself.
#[derive(Debug, Clone)]
pub struct Process {
    dir: PathBuf,
}

/// A process's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Proportional set size: shared pages divided among the processes sharing them, the fair
    /// measure of what one more connection costs.
    pub pss: u64,
    /// Resident set size.
    pub rss: u64,
}

impl Process {
    /// The process `pid`.
    pub fn pid(pid: u32) -> Self {
        Self {
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// This process.
    pub fn current() -> Self {
        Self {
            dir: PathBuf::from("/proc/self"),
        }
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_secs(&self) -> io::Result<f64> {
        let stat = std::fs::read_to_string(self.dir.join("stat"))?;
        let ticks = parse_cpu_ticks(&stat).ok_or_else(|| malformed("stat"))?;
        Ok(ticks as f64 / clock_ticks_per_second() as f64)
    }

    /// PSS and RSS from `smaps_rollup` (Linux 4.14 and later).
    pub fn memory(&self) -> io::Result<Memory> {
        let rollup = std::fs::read_to_string(self.dir.join("smaps_rollup"))?;
        parse_memory(&rollup).ok_or_else(|| malformed("smaps_rollup"))
    }
}

fn malformed(file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected /proc {file} format"),
    )
}

/// The kernel's unit for CPU times in `/proc/PID/stat`.
fn clock_ticks_per_second() -> u64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100,
        ticks => ticks,
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) is
/// in parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The `Pss:` and `Rss:` lines (in kB) of `smaps_rollup`.
fn parse_memory(rollup: &str) -> Option<Memory> {
    let field = |name: &str| {
        rollup.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    Some(Memory {
        pss: field("Pss")?,
        rss: field("Rss")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_awkward_name() {
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 \
                    100 1000 10 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn rollup_fields() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  2048 kB\nPss:  1024 kB\n\
                      Pss_Anon:  512 kB\n";
        assert_eq!(
            parse_memory(rollup),
            Some(Memory {
                pss: 1024 * 1024,
                rss: 2048 * 1024
            })
        );
        assert_eq!(parse_memory("Rss: 1 kB\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = Process::current();
        assert!(me.cpu_secs().is_ok_and(|secs| secs >= 0.0));
        assert!(me.memory().is_ok_and(|memory| memory.rss > 0));
    }
}
