//! `hytm-diag`: what this machine's TSX can do, and what hytm will do with it.
//!
//! Exit status: 0 whether or not HTM is usable; 2 for a bad flag or a bad
//! `HYTM_*` value, with a message naming it and the accepted values.

use std::process::ExitCode;

use hytm::rtm::AbortCause;

const HELP: &str = "\
hytm-diag: TSX (RTM) detection and hytm's effective mode

USAGE:
    hytm-diag [cpu] [--json]
    hytm-diag --help

COMMANDS:
    cpu        CPU, every TSX bit, verdict and reason, probe result, effective mode (the default)

OPTIONS:
    --json     print the same as JSON
    -h, --help print this help

ENVIRONMENT:
    HYTM_MODE=auto|htm|fallback     mode (auto by default)
    HYTM_INJECT=<cause>:<p>[,...]   abort injection
    HYTM_STATS=stderr|json:<path>   statistics report at exit

Exit status: 0 whether or not HTM is usable; 2 on a bad flag or HYTM_* value.
";

struct Args {
    json: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args { json: false };
    let mut command: Option<String> = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => args.json = true,
            "cpu" if command.is_none() => command = Some(arg),
            other if other.starts_with('-') => {
                return Err(format!(
                    "unknown option {other:?}; accepted: --json, --help"
                ))
            }
            other => {
                return Err(format!("unknown command {other:?}; accepted: cpu"));
            }
        }
    }
    Ok(Some(args))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn cpu_text() -> String {
    let info = hytm::htm();
    let cpu = info.cpu();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<18} {v}\n"));
    if cpu.x86_64 {
        line("cpu", format!("{} ({})", cpu.brand, cpu.vendor));
        line(
            "family/model/step",
            format!("{:#x}/{:#x}/{:#x}", cpu.family, cpu.model, cpu.stepping),
        );
        line("hypervisor", yes_no(cpu.hypervisor).into());
        line("RTM", yes_no(cpu.rtm).into());
        line("HLE", yes_no(cpu.hle).into());
        line("RTM_ALWAYS_ABORT", yes_no(cpu.rtm_always_abort).into());
        line("TSX_FORCE_ABORT", yes_no(cpu.tsx_force_abort).into());
        line("TSXLDTRK", yes_no(cpu.tsxldtrk).into());
        line(
            "denylist",
            cpu.denylisted().unwrap_or("not listed").to_string(),
        );
    } else {
        line("cpu", "not x86_64".into());
    }
    line(
        "verdict",
        format!(
            "{} ({})",
            if info.usable() {
                "usable"
            } else {
                "not usable"
            },
            info.reason()
        ),
    );
    line(
        "probe",
        match info.probe() {
            Some(p) => p.to_string(),
            None => "not run (CPUID rules RTM out)".into(),
        },
    );
    line(
        "mode",
        format!("{} ({})", hytm::mode(), hytm::mode_reason()),
    );
    out
}

fn cpu_json() -> serde_json::Value {
    let info = hytm::htm();
    let cpu = info.cpu();
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
    serde_json::json!({
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
            "tsxldtrk": cpu.tsxldtrk,
            "denylisted": cpu.denylisted(),
        },
        "usable": info.usable(),
        "reason": info.reason(),
        "probe": probe,
        "mode": hytm::mode().name(),
        "mode_reason": hytm::mode_reason(),
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hytm-diag: {e}\n(see hytm-diag --help)");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = hytm::init() {
        eprintln!("hytm-diag: {e}");
        return ExitCode::from(2);
    }
    if args.json {
        println!("{:#}", cpu_json());
    } else {
        print!("{}", cpu_text());
    }
    ExitCode::SUCCESS
}
