//! `hytm-diag perf`: TSX PMU counts through perf_event_open.

use crate::{Lines, Output};

/// Intel's TSX events (SDM vol. 3B, and `perf list` on Haswell and later):
/// (name, raw config). `cycles-t`/`cycles-ct` are cycles with the in_tx
/// (bit 32) and in_tx_cp (bit 33) qualifiers.
const EVENTS: [(&str, u64); 7] = [
    ("tx-start", 0x01c9),
    ("tx-commit", 0x02c9),
    ("tx-abort", 0x04c9),
    ("tx-conflict", 0x0154),
    ("tx-capacity", 0x0254),
    ("cycles-t", 0x003c | (1 << 32)),
    ("cycles-ct", 0x003c | (1 << 32) | (1 << 33)),
];

pub fn run() -> Output {
    let mut l = Lines::default();
    let result = counts();
    let json = match &result {
        Ok(counts) => {
            for (name, n) in counts {
                l.add(name, n);
            }
            serde_json::json!({
                "available": true,
                "counts": counts.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            })
        }
        Err(why) => {
            l.add("TSX PMU events", format!("unavailable: {why}"));
            serde_json::json!({ "available": false, "reason": why })
        }
    };
    Output {
        text: l.into_string(),
        json,
    }
}

#[cfg(target_os = "linux")]
fn counts() -> Result<Vec<(&'static str, u64)>, String> {
    use perf_event_open_sys as sys;

    // First: is there a PMU at all? Count plain cycles.
    let cycles = Counter::open(
        sys::bindings::PERF_TYPE_HARDWARE,
        u64::from(sys::bindings::PERF_COUNT_HW_CPU_CYCLES),
    )
    .map_err(|e| {
        format!("no hardware PMU exposed to this machine (perf_event_open cycles: {e})")
    })?;
    drop(cycles);
    if !hytm::htm().usable() {
        return Err(crate::no_rtm_note());
    }
    if hytm::htm().cpu().vendor != "GenuineIntel" {
        return Err("TSX events are Intel events; this CPU is not Intel".into());
    }
    let counters: Vec<(&str, Counter)> = EVENTS
        .iter()
        .map(|&(name, config)| {
            Counter::open(sys::bindings::PERF_TYPE_RAW, config)
                .map(|c| (name, c))
                .map_err(|e| format!("perf_event_open {name}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    for (_, c) in &counters {
        c.enable();
    }
    // The workload: an elided lock with some contention.
    let _ = crate::contention::run(crate::args::ContentionArgs {
        threads: 2,
        keys: 64,
        duration: std::time::Duration::from_millis(500),
    });
    Ok(counters.iter().map(|(name, c)| (*name, c.read())).collect())
}

#[cfg(not(target_os = "linux"))]
fn counts() -> Result<Vec<(&'static str, u64)>, String> {
    Err("perf_event_open is Linux only".into())
}

#[cfg(target_os = "linux")]
struct Counter(std::os::fd::OwnedFd);

#[cfg(target_os = "linux")]
impl Counter {
    fn open(kind: u32, config: u64) -> Result<Counter, std::io::Error> {
        use perf_event_open_sys as sys;
        use std::os::fd::FromRawFd;
        let mut attr = sys::bindings::perf_event_attr {
            type_: kind,
            size: std::mem::size_of::<sys::bindings::perf_event_attr>() as u32,
            config,
            ..Default::default()
        };
        attr.set_disabled(1);
        attr.set_exclude_kernel(1);
        attr.set_exclude_hv(1);
        attr.set_inherit(1);
        // SAFETY: attr is a valid, fully initialized perf_event_attr; pid 0
        // and cpu -1 count this process (and, with inherit, its threads).
        let fd = unsafe { sys::perf_event_open(&mut attr, 0, -1, -1, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Counter(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn enable(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: an ioctl on a perf event descriptor we own.
        unsafe { perf_event_open_sys::ioctls::ENABLE(self.0.as_raw_fd(), 0) };
    }

    fn read(&self) -> u64 {
        use std::io::Read;
        let mut buf = [0u8; 8];
        let mut f = std::fs::File::from(self.0.try_clone().expect("dup perf fd"));
        match f.read_exact(&mut buf) {
            Ok(()) => u64::from_ne_bytes(buf),
            Err(_) => 0,
        }
    }
}
