//! The `hytm-diag` command: output, JSON, exit codes and error messages.

use std::process::{Command, Output};

fn diag(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hytm-diag"));
    cmd.args(args)
        .env_remove("HYTM_MODE")
        .env_remove("HYTM_INJECT")
        .env_remove("HYTM_STATS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hytm-diag")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn default_output_reports_every_tsx_bit_verdict_and_mode() {
    let out = diag(&[], &[]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for key in ["verdict", "probe", "mode"] {
        assert!(s.contains(key), "{key} missing:\n{s}");
    }
    if hytm::htm().cpu().x86_64 {
        for key in [
            "RTM ",
            "HLE",
            "RTM_ALWAYS_ABORT",
            "TSX_FORCE_ABORT",
            "TSXLDTRK",
            "family/model/step",
        ] {
            assert!(s.contains(key), "{key} missing:\n{s}");
        }
    }
    assert!(s.contains(&hytm::htm().reason()), "{s}");
    assert_eq!(
        text(&diag(&["cpu"], &[]).stdout).lines().count(),
        s.lines().count()
    );
}

#[test]
fn json_matches_detection() {
    let out = diag(&["--json"], &[]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["usable"], hytm::htm().usable());
    assert_eq!(v["reason"], hytm::htm().reason());
    assert_eq!(v["tsx"]["rtm"], hytm::htm().cpu().rtm);
    let mode = v["mode"].as_str().unwrap();
    assert!(mode == "htm" || mode == "fallback", "{mode}");
    assert_eq!(mode == "htm", hytm::htm().usable());
    if let Some(p) = hytm::htm().probe() {
        assert_eq!(v["probe"]["attempts"], p.attempts);
    } else {
        assert!(v["probe"].is_null());
    }
}

#[test]
fn forced_fallback_is_reported() {
    let out = diag(&["--json"], &[("HYTM_MODE", "fallback")]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "fallback");
    assert!(text(&diag(&[], &[("HYTM_MODE", "fallback")]).stdout)
        .contains("mode               fallback (requested by HYTM_MODE)"));
}

#[test]
fn bad_values_exit_2_naming_the_setting() {
    let out = diag(&[], &[("HYTM_MODE", "bogus")]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains("HYTM_MODE") && e.contains("auto|htm|fallback"),
        "{e}"
    );

    let out = diag(&[], &[("HYTM_INJECT", "conflict:2")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("HYTM_INJECT"));

    let out = diag(&["--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--bogus"));

    let out = diag(&["nosuch"], &[]);
    assert_eq!(out.status.code(), Some(2));

    if !hytm::htm().usable() {
        let out = diag(&[], &[("HYTM_MODE", "htm")]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains(&hytm::htm().reason()));
    }
}

#[test]
fn help_exits_0() {
    let out = diag(&["--help"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("USAGE"));
}

#[test]
fn every_subcommand_exits_0_with_or_without_rtm() {
    for cmd in ["probe", "perf", "cpu"] {
        let out = diag(&[cmd, "--json"], &[]);
        assert!(out.status.success(), "{cmd}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        if cmd == "probe" && hytm::rtm::MODEL {
            // The probe measures silicon; it says so under the model.
            assert_eq!(v["available"], false);
            assert!(v["reason"].as_str().unwrap().contains("HTM model"));
        } else if cmd == "probe" {
            assert_eq!(v["available"], hytm::htm().usable());
            if !hytm::htm().usable() {
                assert!(v["reason"]
                    .as_str()
                    .unwrap()
                    .contains(&hytm::htm().reason()));
            } else {
                assert!(v["capacity_lines"]["write_set"].as_u64().unwrap() > 0);
            }
        }
        if cmd == "perf" && v["available"] == false {
            assert!(!v["reason"].as_str().unwrap().is_empty());
        }
        let help = diag(&[cmd, "--help"], &[]);
        assert!(help.status.success());
        assert!(text(&help.stdout).contains(&format!("hytm-diag {cmd}")));
    }
}

#[test]
fn contention_reports_shares_that_add_up() {
    let out = diag(
        &[
            "contention",
            "--threads",
            "2",
            "--keys",
            "16",
            "--duration",
            "0.2",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["sections"].as_u64().unwrap() > 0);
    let hw = v["hw_commit_share"].as_f64().unwrap();
    let fb = v["fallback_share"].as_f64().unwrap();
    assert!((hw + fb - 1.0).abs() < 1e-9, "{hw} + {fb}");
    for bad in [["--threads", "0"], ["--keys", "x"], ["--duration", "-1"]] {
        let out = diag(&["contention", bad[0], bad[1]], &[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains(bad[0]));
    }
}

#[test]
fn hytm_stats_reports_at_exit_as_table_and_json_with_the_same_numbers() {
    // Injection puts the elided lock on the counted path on any machine.
    let env = [("HYTM_INJECT", "conflict:0.5"), ("HYTM_STATS", "stderr")];
    let out = diag(&["contention", "--duration", "0.2", "--json"], &env);
    assert!(out.status.success());
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = text(&out.stderr);
    let row = table
        .lines()
        .find(|l| l.starts_with("hytm-diag contention"))
        .unwrap_or_else(|| panic!("no row in:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // The name is two words, then the kind, then the attempts.
    assert_eq!(cells[2], "mutex");
    assert_eq!(cells[3], run["hw_attempts"].to_string(), "{row}");

    let path = std::env::temp_dir().join(format!("hytm-stats-{}.json", std::process::id()));
    let json_env = [
        ("HYTM_INJECT", "conflict:0.5"),
        ("HYTM_STATS", &format!("json:{}", path.display())),
    ];
    let out = diag(&["contention", "--duration", "0.2", "--json"], &json_env);
    assert!(out.status.success());
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    let site = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hytm-diag contention")
        .expect("site in JSON");
    assert_eq!(site["attempts"], run["hw_attempts"]);
    assert_eq!(site["aborts"]["conflict"], run["aborts"]["conflict"]);
    assert!(site["injected"].as_u64().unwrap() > 0);
}

/// `HYTM_MODE=htm` without RTM: the CPU report first (it says why), then
/// the error, exit 2.
#[test]
fn htm_mode_without_rtm_prints_the_cpu_report_then_the_error() {
    if hytm::htm().usable() {
        println!(
            "n/a htm_mode_without_rtm_prints_the_cpu_report_then_the_error: RTM is usable here"
        );
        return;
    }
    let out = diag(&[], &[("HYTM_MODE", "htm")]);
    assert_eq!(out.status.code(), Some(2));
    let report = text(&out.stdout);
    for key in ["verdict ", "probe ", "not usable"] {
        assert!(report.contains(key), "{key} missing from stdout:\n{report}");
    }
    if hytm::htm().cpu().x86_64 {
        assert!(report.contains("RTM_ALWAYS_ABORT"), "{report}");
    }
    let e = text(&out.stderr);
    assert!(
        e.contains("HYTM_MODE=\"htm\"")
            && e.contains(&hytm::htm().reason())
            && e.contains("auto|fallback"),
        "{e}"
    );
}

/// `HYTM_STATS=json:<path>` whose file cannot be created fails at
/// initialisation, naming the variable, the value and what is accepted,
/// before any work runs.
#[test]
fn unwritable_stats_path_is_an_error_at_initialisation() {
    let value = "json:/nonexistent-hytm-dir/x.json";
    let out = diag(
        &["contention", "--duration", "0.2"],
        &[("HYTM_STATS", value)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "work ran: {}", text(&out.stdout));
    let e = text(&out.stderr);
    assert!(e.contains(&format!("HYTM_STATS={value:?}")), "{e}");
    assert!(
        e.contains("json:<path>") && e.contains("/nonexistent-hytm-dir"),
        "{e}"
    );

    // A writable path is created at initialisation and filled at exit.
    let path = std::env::temp_dir().join(format!("hytm-stats-init-{}.json", std::process::id()));
    let out = diag(&[], &[("HYTM_STATS", &format!("json:{}", path.display()))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(json["sites"].is_array());
}

/// `--duration` takes bare seconds or a duration with a unit.
#[test]
fn contention_duration_accepts_units() {
    for (arg, secs) in [("200ms", 0.2), ("1s", 1.0), ("0.3", 0.3)] {
        let out = diag(&["contention", "--threads", "1", "--duration", arg], &[]);
        assert!(
            out.status.success(),
            "--duration {arg}: {}",
            text(&out.stderr)
        );
        let s = text(&out.stdout);
        // The workload line shows the measured run time.
        let ran: f64 = s
            .lines()
            .find_map(|l| l.strip_prefix("workload           1 threads, 64 keys, "))
            .and_then(|rest| rest.strip_suffix(" s"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("--duration {arg}: no workload line in {s}"));
        assert!(
            (secs..secs + 0.5).contains(&ran),
            "--duration {arg} ran {ran} s"
        );
    }
    for bad in ["2 parsecs", "0ms", "2h", "-1s"] {
        let out = diag(&["contention", "--duration", bad], &[]);
        assert_eq!(out.status.code(), Some(2), "--duration {bad}");
        let e = text(&out.stderr);
        assert!(
            e.contains(&format!("{bad:?}")) && e.contains("200ms"),
            "{e}"
        );
    }
}

/// The abort rate says what it is a rate of: without a hardware path the
/// attempts are simulated by injection, and every one is an injected abort.
#[test]
fn abort_rate_says_what_it_is_a_rate_of() {
    let out = diag(
        &["contention", "--threads", "1", "--duration", "0.1"],
        &[("HYTM_INJECT", "conflict:0.3")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.starts_with("abort rate"))
        .unwrap_or_else(|| panic!("no abort rate in {s}"));
    if hytm::mode() == hytm::Mode::Hardware {
        assert!(line.ends_with("of hardware attempts"), "{line}");
    } else {
        assert!(line.contains("100.00% of simulated attempts"), "{line}");
        assert!(line.contains("each one an injected abort"), "{line}");
    }
}
