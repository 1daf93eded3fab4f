//! What the benches share: CPU time of the process, and interleaved rounds of two variants
//! reported as medians (the machine is shared, so sequential runs drift more than the
//! differences measured).

use std::time::Duration;

/// CPU time (user + system) of the whole process so far: client and server both run here.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Medians over interleaved rounds, per call, in nanoseconds.
pub struct Interleaved {
    pub wall_a: f64,
    pub wall_b: f64,
    pub wall_ratio: f64,
    pub cpu_a: f64,
    pub cpu_b: f64,
    pub cpu_ratio: f64,
}

impl Interleaved {
    /// The one-line report: `a` and `b` name the variants.
    pub fn line(&self, rounds: usize, calls: u64, a: &str, b: &str) -> String {
        format!(
            "interleaved, {rounds} rounds of {calls} calls: wall {a} {:.0} ns/call, {b} {:.0} ns/call, median {b}/{a} {:.3}; \
             cpu {a} {:.0} ns/call, {b} {:.0} ns/call, median {b}/{a} {:.3}",
            self.wall_a, self.wall_b, self.wall_ratio, self.cpu_a, self.cpu_b, self.cpu_ratio,
        )
    }
}

/// Runs `rounds` rounds of `a` and `b` alternately (which goes first alternates too); each
/// round makes `calls` calls and returns its wall time. Reports medians of wall and CPU time
/// per call and of the per-round ratios b/a.
pub fn interleave(rounds: usize, calls: u64, a: impl Fn() -> Duration, b: impl Fn() -> Duration) -> Interleaved {
    let measure = |round: &dyn Fn() -> Duration| {
        let cpu = cpu_time();
        let wall = round();
        let per = |d: Duration| d.as_secs_f64() * 1e9 / calls as f64;
        (per(wall), per(cpu_time() - cpu))
    };
    let [mut aw, mut bw, mut wall_ratio, mut ac, mut bc, mut cpu_ratio]: [Vec<f64>; 6] = Default::default();
    for round in 0..rounds {
        let ((wa, ca), (wb, cb)) = if round.is_multiple_of(2) {
            let first = measure(&a);
            (first, measure(&b))
        } else {
            let second = measure(&b);
            (measure(&a), second)
        };
        aw.push(wa);
        bw.push(wb);
        wall_ratio.push(wb / wa);
        ac.push(ca);
        bc.push(cb);
        cpu_ratio.push(cb / ca);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Interleaved {
        wall_a: median(aw),
        wall_b: median(bw),
        wall_ratio: median(wall_ratio),
        cpu_a: median(ac),
        cpu_b: median(bc),
        cpu_ratio: median(cpu_ratio),
    }
}
