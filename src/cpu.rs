//! CPU time of processes and of the whole machine, read from Linux's
//! `/proc`: `bank-bench` reports where a run's CPU went per committed
//! transfer, which is what bounds throughput on a machine whose cores are
//! all busy. Elsewhere every reading is `None` and the report is left out.

use std::collections::BTreeMap;

/// CPU time one process has used so far (all its threads, living and
/// exited), in microseconds: (user, kernel).
pub fn process_cpu_us(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields from the last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let kernel: u64 = fields.next()?.parse().ok()?;
    let us = tick_us()?;
    Some((user * us, kernel * us))
}

/// The whole machine's CPU time so far, in microseconds summed over all
/// cores: (busy, total). Time stolen by a hypervisor counts as not busy.
pub fn machine_cpu_us() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    if v.len() < 8 {
        return None;
    }
    let busy = v[0] + v[1] + v[2] + v[5] + v[6];
    let total = busy + v[3] + v[4] + v[7];
    let us = tick_us()?;
    Some((busy * us, total * us))
}

/// Microseconds per clock tick of `/proc`'s counters.
fn tick_us() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| 1_000_000 / hz as u64)
}

/// A process whose CPU time is reported.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// Readings of the watched processes and the machine at one moment.
#[derive(Debug, Clone)]
pub struct CpuSample {
    processes: Vec<(String, Option<(u64, u64)>)>,
    machine: Option<(u64, u64)>,
}

impl CpuSample {
    pub fn take(watched: &[Watched]) -> CpuSample {
        CpuSample {
            processes: watched
                .iter()
                .map(|w| (w.name.clone(), process_cpu_us(w.pid)))
                .collect(),
            machine: machine_cpu_us(),
        }
    }
}

/// Where the CPU went between two samples, per unit of work.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuReport {
    /// CPU time per committed transfer (user + kernel), in microseconds, by process.
    pub us_per_tx: BTreeMap<String, f64>,
    /// The watched processes' CPU time per committed transfer, in microseconds.
    pub total_us_per_tx: f64,
    /// The part of `total_us_per_tx` spent in the kernel (syscalls, loopback
    /// TCP, fsync, wake-ups).
    pub kernel_us_per_tx: f64,
    /// Share of all the machine's cores that was busy (every process, not
    /// only the watched ones).
    pub machine_busy: f64,
    /// Cores the machine has.
    pub cores: usize,
}

impl CpuReport {
    /// `None` when nothing was committed or `/proc` could not be read.
    pub fn between(before: &CpuSample, after: &CpuSample, committed: u64) -> Option<CpuReport> {
        if committed == 0 {
            return None;
        }
        let mut us_per_tx = BTreeMap::new();
        let (mut total, mut kernel) = (0u64, 0u64);
        for ((name, b), (_, a)) in before.processes.iter().zip(&after.processes) {
            let ((bu, bk), (au, ak)) = ((*b)?, (*a)?);
            let (u, k) = (au.saturating_sub(bu), ak.saturating_sub(bk));
            total += u + k;
            kernel += k;
            us_per_tx.insert(name.clone(), (u + k) as f64 / committed as f64);
        }
        let ((bb, bt), (ab, at)) = (before.machine?, after.machine?);
        let span = at.saturating_sub(bt).max(1);
        Some(CpuReport {
            us_per_tx,
            total_us_per_tx: total as f64 / committed as f64,
            kernel_us_per_tx: kernel as f64 / committed as f64,
            machine_busy: ab.saturating_sub(bb) as f64 / span as f64,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let me = std::process::id();
        let (u0, k0) = process_cpu_us(me).expect("/proc/self/stat readable on Linux");
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (u1, k1) = process_cpu_us(me).expect("readable");
        // 200 ms of spinning: at least 100 ms must show (ticks are 10 ms).
        assert!(u1 + k1 >= u0 + k0 + 100_000, "{u0}+{k0} -> {u1}+{k1}");
        let (busy, total) = machine_cpu_us().expect("/proc/stat readable");
        assert!(busy <= total && total > 0);
    }

    #[test]
    fn report_divides_by_committed_transfers() {
        let before = CpuSample {
            processes: vec![("a".into(), Some((1_000, 500))), ("b".into(), Some((0, 0)))],
            machine: Some((10_000, 40_000)),
        };
        let after = CpuSample {
            processes: vec![("a".into(), Some((11_000, 2_500))), ("b".into(), Some((4_000, 0)))],
            machine: Some((30_000, 60_000)),
        };
        let r = CpuReport::between(&before, &after, 100).expect("report");
        assert_eq!(r.us_per_tx["a"], 120.0);
        assert_eq!(r.us_per_tx["b"], 40.0);
        assert_eq!(r.total_us_per_tx, 160.0);
        assert_eq!(r.kernel_us_per_tx, 20.0);
        assert_eq!(r.machine_busy, 1.0);
        assert!(CpuReport::between(&before, &after, 0).is_none());
    }
}
