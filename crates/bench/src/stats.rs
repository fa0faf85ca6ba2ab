//! Small statistics over benchmark samples: latency percentiles and medians over rounds.

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Samples.
    pub n: usize,
}

impl Percentiles {
    /// Percentiles of nanosecond samples (nearest rank on the sorted samples; all zero if empty).
    pub fn of_nanos(mut v: Vec<u64>) -> Percentiles {
        v.sort_unstable();
        if v.is_empty() {
            return Percentiles::default();
        }
        let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
        Percentiles {
            p50: pct(0.5),
            p99: pct(0.99),
            p999: pct(0.999),
            n: v.len(),
        }
    }
}

/// Median of a list (the mean of the two middle values for an even count; NaN if empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// CPU time this process has used so far (all threads, user + system), in nanoseconds.
///
/// The benchmarks report CPU time per message next to throughput: on a noisy 2-core machine the
/// throughput of a run depends on what else ran, while the CPU each side spends per message is
/// much steadier and says which side limits the pipeline.
pub fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID is always supported on
    // Linux. On failure the struct stays zeroed and the figure reads 0.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
