//! Server-side cost, read from `/proc` while the load runs: CPU seconds a set of processes
//! spent in the measurement window and their resident memory. Linux only; elsewhere the
//! figures are simply absent from the report.

use std::time::Duration;

/// CPU time (user + system) and resident set of some processes at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub cpu: Duration,
    pub rss_kib: u64,
}

/// Sums `/proc/PID/stat` CPU times and `/proc/PID/status` VmRSS over `pids`; `None` if any is
/// unreadable (process gone, not Linux).
pub fn sample(pids: &[u32]) -> Option<Sample> {
    let ticks_per_s = clock_ticks_per_second();
    let mut total = Sample::default();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        total.cpu += Duration::from_secs_f64((utime + stime) as f64 / ticks_per_s);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        total.rss_kib += rss;
    }
    Some(total)
}

/// `sysconf(_SC_CLK_TCK)` is 100 on every Linux architecture sluice targets.
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn samples_this_process() {
        let pid = std::process::id();
        let before = sample(&[pid]).unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = sample(&[pid]).unwrap();
        assert!(after.cpu >= before.cpu + Duration::from_millis(100));
        assert!(after.rss_kib > 0);
        assert!(sample(&[u32::MAX]).is_none());
    }
}
