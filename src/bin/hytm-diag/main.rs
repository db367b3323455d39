//! `hytm-diag`: what this machine's TSX can do, and what hytm does with it.
//!
//! Subcommands: `cpu` (the default), `probe`, `contention`, `perf`; each
//! takes `--json` and `--help`. Exit status: 0 whether or not HTM is usable;
//! 2 for a bad flag or a bad `HYTM_*` value, with a message naming it and the
//! accepted values.

mod args;
mod contention;
mod cpu;
mod perf;
mod probe;

use std::process::ExitCode;

use args::{Args, UsageError};

const HELP: &str = "\
hytm-diag: TSX (RTM) detection, abort diagnostics and hytm's effective mode

USAGE:
    hytm-diag [COMMAND] [OPTIONS]

COMMANDS:
    cpu          CPU, every TSX bit, verdict and reason, probe result, mode (default)
    probe        latency, read/write-set capacity, abort sources, status-0 rate vs duration
    contention   abort causes and commit shares of an elided lock over K counters
    perf         TSX PMU counts through perf_event_open, where exposed

OPTIONS:
    --json       print JSON instead of text (every command)
    -h, --help   print help (every command: hytm-diag COMMAND --help)

ENVIRONMENT:
    HYTM_MODE=auto|htm|fallback     mode (auto by default)
    HYTM_INJECT=<cause>:<p>[,...]   abort injection
    HYTM_STATS=stderr|json:<path>   per-site statistics report at exit

Exit status: 0 whether or not HTM is usable; 2 on a bad flag or HYTM_* value
(HYTM_MODE=htm where RTM is not usable: the cpu report, then the error).
";

fn main() -> ExitCode {
    if std::env::var_os(probe::VDSO_CHILD).is_some() {
        probe::vdso_child();
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(UsageError::Help(text)) => {
            print!("{}", text.unwrap_or(HELP));
            return ExitCode::SUCCESS;
        }
        Err(UsageError::Bad(msg)) => {
            eprintln!("hytm-diag: {msg}\n(see hytm-diag --help)");
            return ExitCode::from(2);
        }
    };
    let json = args.json;
    if let Err(e) = hytm::init() {
        if e.setting() == "HYTM_MODE" && e.value() == "htm" {
            // The request cannot be met on this machine: the CPU report says
            // why, then the error.
            let out = cpu::report(false);
            if json {
                println!("{:#}", out.json);
            } else {
                print!("{}", out.text);
            }
        }
        eprintln!("hytm-diag: {e}");
        return ExitCode::from(2);
    }
    let out = match args.command {
        args::Command::Cpu => cpu::run(),
        args::Command::Probe => probe::run(),
        args::Command::Contention(c) => contention::run(c),
        args::Command::Perf => perf::run(),
    };
    if json {
        println!("{:#}", out.json);
    } else {
        print!("{}", out.text);
    }
    ExitCode::SUCCESS
}

/// What a subcommand reports, in both forms.
pub struct Output {
    pub text: String,
    pub json: serde_json::Value,
}

/// Text lines `key  value`, aligned.
#[derive(Default)]
pub struct Lines(String);

impl Lines {
    pub fn add(&mut self, key: &str, value: impl std::fmt::Display) {
        self.0.push_str(&format!("{key:<18} {value}\n"));
    }

    pub fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The line every subcommand prints where RTM is not usable.
pub fn no_rtm_note() -> String {
    format!("RTM not usable here: {}", hytm::htm().reason())
}
