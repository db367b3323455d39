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
