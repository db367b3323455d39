//! `hytm-diag cpu`: detection at a glance.

use hytm::rtm::AbortCause;

use crate::{Lines, Output};

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn run() -> Output {
    report(true)
}

/// The CPU report; `with_mode: false` leaves the runtime alone (it could not
/// be initialized) and says so on the mode line.
pub fn report(with_mode: bool) -> Output {
    let info = hytm::htm();
    let cpu = info.cpu();
    let mut l = Lines::default();
    if cpu.x86_64 {
        l.add("cpu", format!("{} ({})", cpu.brand, cpu.vendor));
        l.add(
            "family/model/step",
            format!("{:#x}/{:#x}/{:#x}", cpu.family, cpu.model, cpu.stepping),
        );
        l.add("hypervisor", yes_no(cpu.hypervisor));
        l.add("RTM", yes_no(cpu.rtm));
        l.add("HLE", yes_no(cpu.hle));
        l.add("RTM_ALWAYS_ABORT", yes_no(cpu.rtm_always_abort));
        l.add(
            "TSX_FORCE_ABORT",
            match (cpu.tsx_force_abort, cpu.rtm_force_abort) {
                (false, _) => "no".to_string(),
                (true, Some(true)) => "yes, RTM_FORCE_ABORT set: every transaction aborts".into(),
                (true, Some(false)) => "yes, RTM_FORCE_ABORT clear".into(),
                (true, None) => {
                    "yes, RTM_FORCE_ABORT unreadable (needs root and the msr driver): the probe decides".into()
                }
            },
        );
        l.add("TSXLDTRK", yes_no(cpu.tsxldtrk));
        l.add("denylist", cpu.denylisted().unwrap_or("not listed"));
    } else {
        l.add("cpu", "not x86_64");
    }
    let verdict = if info.usable() {
        "usable"
    } else {
        "not usable"
    };
    l.add("verdict", format!("{verdict} ({})", info.reason()));
    l.add(
        "probe",
        match info.probe() {
            Some(p) => p.to_string(),
            None => "not run (CPUID rules RTM out)".into(),
        },
    );
    let (mode, mode_reason) = if with_mode {
        (Some(hytm::mode().name()), Some(hytm::mode_reason()))
    } else {
        (None, None)
    };
    match (mode, mode_reason) {
        (Some(m), Some(why)) => {
            l.add("mode", format!("{m} ({why})"));
            l.add("stm", hytm::stm_protocol().to_string());
        }
        _ => l.add("mode", "not resolved (see the error below)"),
    }

    let probe = info.probe().map(|p| {
        let aborts: serde_json::Map<String, serde_json::Value> = AbortCause::ALL
            .iter()
            .map(|c| (c.name().to_string(), p.aborts[c.index()].into()))
            .collect();
        serde_json::json!({
            "attempts": p.attempts,
            "commits": p.commits,
            "aborts": aborts,
            "first_abort": p.first_abort.map(|s| s.to_string()),
            "first_abort_raw": p.first_abort.map(|s| s.raw()),
            "ns_per_commit": p.ns_per_commit,
        })
    });
    let json = serde_json::json!({
        "cpu": {
            "x86_64": cpu.x86_64,
            "vendor": cpu.vendor,
            "brand": cpu.brand,
            "family": cpu.family,
            "model": cpu.model,
            "stepping": cpu.stepping,
            "hypervisor": cpu.hypervisor,
        },
        "tsx": {
            "rtm": cpu.rtm,
            "hle": cpu.hle,
            "rtm_always_abort": cpu.rtm_always_abort,
            "tsx_force_abort": cpu.tsx_force_abort,
            "rtm_force_abort": cpu.rtm_force_abort,
            "tsxldtrk": cpu.tsxldtrk,
            "denylisted": cpu.denylisted(),
        },
        "usable": info.usable(),
        "reason": info.reason(),
        "probe": probe,
        "mode": mode,
        "stm": with_mode.then(|| hytm::stm_protocol().name()),
        "mode_reason": mode_reason,
    });
    Output {
        text: l.into_string(),
        json,
    }
}
