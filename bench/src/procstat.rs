//! CPU time and resident memory of a process tree, from `/proc`: the server under test (with its
//! children, so nginx's master and worker are both counted) and the load tool itself.

use std::fs;

/// CPU and memory of a process tree at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds consumed so far (clock ticks: 10 ms resolution, but includes
    /// threads that already exited).
    pub cpu_s: f64,
    /// On-CPU seconds of the live threads from `/proc/PID/task/TID/schedstat` (nanosecond
    /// resolution), when the kernel provides it.
    pub cpu_precise_s: Option<f64>,
    /// Resident set size in KiB.
    pub rss_kib: u64,
}

impl ProcSample {
    /// CPU seconds spent between `self` and a later sample. The nanosecond figure is used unless
    /// it lost time to threads that exited in between (it then falls short of the tick count by
    /// more than the ticks' own error), in which case the tick count is the honest one.
    pub fn cpu_since(&self, earlier: &ProcSample) -> f64 {
        let ticks = self.cpu_s - earlier.cpu_s;
        match (self.cpu_precise_s, earlier.cpu_precise_s) {
            (Some(b), Some(a)) if b - a >= ticks - 0.03 => b - a,
            _ => ticks,
        }
    }
}

/// Sums the first field (ns on CPU) of every thread's `schedstat` of `pid`.
fn schedstat_s(pid: u32) -> Option<f64> {
    let mut total_ns: u64 = 0;
    for t in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let s = fs::read_to_string(t.path().join("schedstat")).ok()?;
        total_ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total_ns as f64 / 1e9)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Parses `/proc/PID/stat` into (utime + stime) clock ticks. The command name may contain spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 overall, utime 14, stime 15 → indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Parses `VmRSS:` (KiB) out of `/proc/PID/status`; kernel threads have none.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out
}

/// Samples `pid` and all its descendants. Fails if `pid` itself is gone.
pub fn sample_tree(pid: u32) -> Result<ProcSample, String> {
    let ticks = clock_ticks_per_second();
    let mut todo = vec![pid];
    let mut total = ProcSample { cpu_precise_s: Some(0.0), ..ProcSample::default() };
    let mut first = true;
    while let Some(p) = todo.pop() {
        let stat = fs::read_to_string(format!("/proc/{p}/stat"));
        let status = fs::read_to_string(format!("/proc/{p}/status"));
        match (stat, status) {
            (Ok(stat), Ok(status)) => {
                let t = parse_stat_ticks(&stat).ok_or_else(|| format!("cannot parse /proc/{p}/stat"))?;
                total.cpu_s += t as f64 / ticks;
                total.cpu_precise_s = match (total.cpu_precise_s, schedstat_s(p)) {
                    (Some(sum), Some(s)) => Some(sum + s),
                    _ => None,
                };
                total.rss_kib += parse_status_rss_kib(&status).unwrap_or(0);
            }
            (Err(e), _) | (_, Err(e)) if first => return Err(format!("cannot read /proc/{p}: {e}")),
            // A child that exited between listing and reading no longer counts.
            _ => {}
        }
        first = false;
        todo.extend(children(p));
    }
    Ok(total)
}

/// Busy CPU seconds of the whole machine (all CPUs, from the first line of `/proc/stat`), to
/// tell how much of the machine other processes used during a window.
pub fn machine_busy_s() -> Option<f64> {
    parse_proc_stat_busy_ticks(&fs::read_to_string("/proc/stat").ok()?).map(|t| t as f64 / clock_ticks_per_second())
}

/// Sums user, nice, system, irq, softirq and steal ticks of the `cpu` line (idle and iowait are
/// not busy).
pub fn parse_proc_stat_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5).unwrap_or(&0) + f.get(6).unwrap_or(&0) + f.get(7).unwrap_or(&0))
}

/// This process (the load tool).
pub fn sample_self() -> ProcSample {
    sample_tree(std::process::id()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (nginx: worker (x) ) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn precise_cpu_is_used_unless_exited_threads_took_time_with_them() {
        let s = |ticks: f64, precise: Option<f64>| ProcSample { cpu_s: ticks, cpu_precise_s: precise, rss_kib: 0 };
        assert!((s(1.02, Some(5.0123)).cpu_since(&s(1.0, Some(5.0))) - 0.0123).abs() < 1e-9);
        // A thread that used 0.5 s exited: the live-thread sum went down, the ticks did not.
        assert!((s(1.6, Some(5.05)).cpu_since(&s(1.0, Some(5.0))) - 0.6).abs() < 1e-9);
        assert!((s(1.6, None).cpu_since(&s(1.0, Some(5.0))) - 0.6).abs() < 1e-9);
    }

    #[test]
    fn parses_machine_busy_ticks() {
        let stat = "cpu  100 5 50 9000 30 7 8 2 0 0\ncpu0 50 2 25 4500 15 3 4 1 0 0\n";
        assert_eq!(parse_proc_stat_busy_ticks(stat), Some(100 + 5 + 50 + 7 + 8 + 2));
        assert_eq!(parse_proc_stat_busy_ticks("intr 1 2"), None);
        assert!(machine_busy_s().is_some());
    }

    #[test]
    fn parses_vmrss() {
        assert_eq!(parse_status_rss_kib("Name:\tnginx\nVmRSS:\t   16128 kB\nThreads: 1\n"), Some(16128));
        assert_eq!(parse_status_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn samples_this_process_and_sees_cpu_being_spent() {
        let before = sample_self();
        // Spin until 0.1 s of CPU (not of wall time) is spent: on a loaded machine 100 ms of
        // wall time can be 30 ms on CPU. The meter is the nanosecond figure where the kernel has
        // it; the assertions below check the tick count, which is read independently.
        let spent = |s: &ProcSample| match (s.cpu_precise_s, before.cpu_precise_s) {
            (Some(b), Some(a)) => b - a,
            _ => s.cpu_s - before.cpu_s,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        let mut after = sample_self();
        while spent(&after) < 0.1 && std::time::Instant::now() < deadline {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            after = sample_self();
        }
        std::hint::black_box(x);
        assert!(after.rss_kib > 0);
        assert!(after.cpu_s > before.cpu_s, "{before:?} -> {after:?}");
        // Never below the tick count minus its tolerance, even if other test threads exit meanwhile.
        assert!(after.cpu_since(&before) >= 0.05, "{before:?} -> {after:?}");
        assert!(sample_tree(u32::MAX).is_err());
    }
}
