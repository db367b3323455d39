//! Command-line parsing: each subcommand with its own flags and help.

use std::time::Duration;

pub enum Command {
    Cpu,
    Probe,
    Contention(ContentionArgs),
    Perf,
}

#[derive(Clone, Copy, Debug)]
pub struct ContentionArgs {
    pub threads: usize,
    pub keys: usize,
    pub duration: Duration,
}

pub struct Args {
    pub command: Command,
    pub json: bool,
}

pub enum UsageError {
    /// `--help`: the help text of the command (None: the main help).
    Help(Option<&'static str>),
    /// A bad flag or value, with the message.
    Bad(String),
}

const CPU_HELP: &str = "\
hytm-diag cpu: CPU, every TSX bit, verdict and reason, probe result, effective mode

USAGE:
    hytm-diag [cpu] [--json]
";

const PROBE_HELP: &str = "\
hytm-diag probe: what RTM can do on this machine

Measures begin+commit latency against an uncontended lock; write-set and
read-set capacity in cache lines (largest size committing >= 90%), contiguous
and 4 KiB-strided; which operations abort and with what status (syscall, first
touch of a page, heap growth, pause, cpuid, vDSO clock before first use, a
panic); the status-0 abort rate against transaction duration. Progress goes
to stderr. Without RTM it says why and exits 0.

USAGE:
    hytm-diag probe [--json]
";

const CONTENTION_HELP: &str = "\
hytm-diag contention: an elided lock over K counters, N threads, for T seconds

Prints throughput, abort rate by cause, hardware commit and fallback shares.
Runs in any mode (in fallback mode every section takes the lock).

USAGE:
    hytm-diag contention [--threads N] [--keys K] [--duration T] [--json]

OPTIONS:
    --threads N    threads, 1..=1024 (default 2)
    --keys K       counters under the one lock, 1..=16777216 (default 64)
    --duration T   seconds (0.5) or a duration with a unit (200ms, 2s, 1m),
                   more than 0 and at most 1h (default 1s)
";

const PERF_HELP: &str = "\
hytm-diag perf: TSX PMU counts through perf_event_open

Counts tx-start, tx-commit, tx-abort, tx-capacity, tx-conflict, cycles and
cycles in transactions over an elided-lock workload, where the CPU and kernel
expose them. Says plainly when they are unavailable (no RTM, no PMU, no
permission) and exits 0.

USAGE:
    hytm-diag perf [--json]
";

impl Args {
    pub fn parse(args: impl Iterator<Item = String>) -> Result<Args, UsageError> {
        let args: Vec<String> = args.collect();
        let (name, rest) = match args.first().map(String::as_str) {
            Some(c @ ("cpu" | "probe" | "contention" | "perf")) => (c, &args[1..]),
            Some(first) if !first.starts_with('-') => {
                return Err(UsageError::Bad(format!(
                    "unknown command {first:?}; accepted: cpu, probe, contention, perf"
                )))
            }
            _ => ("", &args[..]),
        };
        let help = match name {
            "cpu" => Some(CPU_HELP),
            "probe" => Some(PROBE_HELP),
            "contention" => Some(CONTENTION_HELP),
            "perf" => Some(PERF_HELP),
            _ => None,
        };
        let mut json = false;
        let mut contention = ContentionArgs {
            threads: 2,
            keys: 64,
            duration: Duration::from_secs(1),
        };
        let mut it = rest.iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| UsageError::Bad(format!("{flag} needs a value")))
            };
            match (name, arg.as_str()) {
                (_, "-h" | "--help") => return Err(UsageError::Help(help)),
                (_, "--json") => json = true,
                ("contention", "--threads") => {
                    contention.threads = number(&value("--threads")?, "--threads", 1, 1024)?;
                }
                ("contention", "--keys") => {
                    contention.keys = number(&value("--keys")?, "--keys", 1, 1 << 24)?;
                }
                ("contention", "--duration") => {
                    contention.duration = duration(&value("--duration")?)?;
                }
                (_, other) => {
                    let accepted = match name {
                        "contention" => "--threads, --keys, --duration, --json, --help",
                        _ => "--json, --help",
                    };
                    let cmd = if name.is_empty() { "hytm-diag" } else { name };
                    return Err(UsageError::Bad(format!(
                        "unknown option {other:?} for {cmd}; accepted: {accepted}"
                    )));
                }
            }
        }
        let command = match name {
            "probe" => Command::Probe,
            "contention" => Command::Contention(contention),
            "perf" => Command::Perf,
            _ => Command::Cpu,
        };
        Ok(Args { command, json })
    }
}

fn number(v: &str, flag: &str, lo: usize, hi: usize) -> Result<usize, UsageError> {
    match v.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(UsageError::Bad(format!(
            "invalid {flag} {v:?}: accepted values are whole numbers {lo}..={hi}"
        ))),
    }
}

/// `--duration`: bare seconds (`0.5`) or a duration with units, as the
/// `humantime` crate reads them (`200ms`, `2s`, `1m 30s`); more than zero
/// and at most an hour.
fn duration(v: &str) -> Result<Duration, UsageError> {
    const MAX: Duration = Duration::from_secs(3600);
    let d = match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= MAX.as_secs_f64() => {
            Some(Duration::from_secs_f64(s))
        }
        Ok(_) => None,
        Err(_) => humantime::parse_duration(v.trim()).ok(),
    };
    match d {
        Some(d) if !d.is_zero() && d <= MAX => Ok(d),
        _ => Err(UsageError::Bad(format!(
            "invalid --duration {v:?}: accepted values are seconds (0.5) or a duration with a unit (200ms, 2s, 1m), more than 0 and at most 1h"
        ))),
    }
}
