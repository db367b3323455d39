//! Bad configuration input, as property tests: arbitrary `HYTM_*` values and
//! builder fields never panic, are accepted exactly when they follow the
//! documented grammar, and are otherwise refused with a [`ConfigError`] that
//! names the setting, carries the value and says what is accepted. A failed
//! configuration is never half-applied.
//!
//! The grammar is written out below as an independent model (a hand-written
//! float grammar, not `str::parse` deciding validity) and compared with
//! `Config::from_lookup` on generated strings: arbitrary Unicode, and
//! near-valid strings built from the grammar's own pieces with one thing
//! wrong here and there.
//!
//! Only `failed_configuration_is_never_half_applied` touches the global
//! runtime; every property test uses pure functions, so the tests may run in
//! any order and in parallel.

use std::cell::RefCell;
use std::path::PathBuf;

use hytm::rtm::AbortCause;
use hytm::{Config, ConfigError, Mode, Policy, StatsOutput};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestRunner};

const MODES: [&str; 3] = ["auto", "htm", "fallback"];
const CAUSES: [&str; 7] = [
    "conflict", "capacity", "retry", "explicit", "nested", "debug", "other",
];
const VARS: [&str; 3] = ["HYTM_MODE", "HYTM_INJECT", "HYTM_STATS"];

/// Slack the sum of injection probabilities is allowed over 1, for decimal
/// rounding (`0.1,0.2,0.7`).
const SUM_SLACK: f64 = 1e-9;

/// 256 cases per property keeps the file to a few seconds. No failure
/// persistence: a failing case is printed, shrunk, and not written into the
/// source tree.
fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The model: what the documentation says is accepted.

/// `HYTM_MODE`: exactly one of the three names; empty is the same as unset
/// (as for every `HYTM_*` variable).
fn model_mode(s: &str) -> Option<Mode> {
    match s {
        "" | "auto" => Some(Mode::Auto),
        "htm" => Some(Mode::Hardware),
        "fallback" => Some(Mode::Fallback),
        _ => None,
    }
}

/// Rust's float syntax (`f64::from_str`), written out:
/// `[+-]? ( inf | infinity | nan | Number )`, the words in any case, and
/// `Number = ( Digit+ | Digit+ '.' Digit* | Digit* '.' Digit+ ) ( [eE] [+-]? Digit+ )?`.
fn float_syntax(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if ["inf", "infinity", "nan"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w))
    {
        return true;
    }
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let mantissa_ok = digits(int)
        && frac.is_none_or(digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// `HYTM_INJECT`: empty (or blank) for none, else a comma list of
/// `cause:probability`, whitespace around items and around each part
/// ignored, each probability a float in 0..=1, the probabilities adding up
/// to at most 1.
fn model_inject(s: &str) -> Option<Injections> {
    let mut rules = Vec::new();
    let mut rollback = 0.0;
    if s.trim().is_empty() {
        return Some((rules, rollback));
    }
    for item in s.split(',') {
        let (name, p) = item.split_once(':')?;
        let cause = AbortCause::ALL
            .into_iter()
            .find(|c| c.name() == name.trim());
        if cause.is_none() && name.trim() != "rollback" {
            return None;
        }
        let p = p.trim();
        if !float_syntax(p) {
            return None;
        }
        let p: f64 = p
            .parse()
            .unwrap_or_else(|_| panic!("the model's float syntax accepted {p:?}, std does not"));
        if !(0.0..=1.0).contains(&p) {
            return None;
        }
        match cause {
            Some(cause) => rules.push((cause, p)),
            None => rollback += p,
        }
    }
    let total: f64 = rollback + rules.iter().map(|(_, p)| p).sum::<f64>();
    (total <= 1.0 + SUM_SLACK).then_some((rules, rollback))
}

/// Abort rules and the rollback probability.
type Injections = (Vec<(AbortCause, f64)>, f64);

/// `HYTM_STATS`: empty for none, `stderr`, or `json:` and a non-empty path.
fn model_stats(s: &str) -> Option<StatsOutput> {
    match s {
        "" => Some(StatsOutput::None),
        "stderr" => Some(StatsOutput::Stderr),
        _ => match s.strip_prefix("json:") {
            Some(path) if !path.is_empty() => Some(StatsOutput::Json(PathBuf::from(path))),
            _ => None,
        },
    }
}

/// What each variable's error message must mention as accepted.
fn accepted_words(var: &str) -> &'static [&'static str] {
    match var {
        "HYTM_MODE" => &["auto|htm|fallback"],
        "HYTM_INJECT" => &[
            "<cause>:<probability>",
            "conflict",
            "capacity",
            "retry",
            "explicit",
            "nested",
            "debug",
            "other",
            "0..=1",
        ],
        "HYTM_STATS" => &["stderr", "json:<path>"],
        _ => unreachable!("{var}"),
    }
}

fn valid(var: &str, value: &str) -> bool {
    match var {
        "HYTM_MODE" => model_mode(value).is_some(),
        "HYTM_INJECT" => model_inject(value).is_some(),
        "HYTM_STATS" => model_stats(value).is_some(),
        _ => unreachable!("{var}"),
    }
}

// ---------------------------------------------------------------------------
// Checking `Config::from_lookup` against the model.

/// An environment of the given variables; records every name looked up.
struct Env<'a> {
    vars: &'a [(&'a str, String)],
    asked: RefCell<Vec<String>>,
}

impl<'a> Env<'a> {
    fn new(vars: &'a [(&'a str, String)]) -> Env<'a> {
        Env {
            vars,
            asked: RefCell::new(Vec::new()),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.asked.borrow_mut().push(name.to_string());
        self.vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// The error must name `var`, carry `value`, and say both and what is
/// accepted in its message.
fn check_error(err: &ConfigError, var: &str, value: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(err.setting(), var);
    prop_assert_eq!(err.value(), value);
    let msg = err.to_string();
    prop_assert!(msg.contains(var), "message does not name {}: {}", var, msg);
    prop_assert!(
        msg.contains(&format!("{value:?}")),
        "message does not carry the value {:?}: {}",
        value,
        msg
    );
    for word in accepted_words(var) {
        prop_assert!(
            msg.contains(word),
            "message does not say {:?} is accepted: {}",
            word,
            msg
        );
    }
    Ok(())
}

/// Runs `Config::from_lookup` on `vars` and compares with the model.
fn check_lookup(vars: &[(&str, String)]) -> Result<(), TestCaseError> {
    let env = Env::new(vars);
    let result = Config::from_lookup(|name| env.get(name));
    for name in env.asked.borrow().iter() {
        prop_assert!(VARS.contains(&name.as_str()), "looked up {}", name);
    }
    let bad: Vec<&(&str, String)> = vars.iter().filter(|(k, v)| !valid(k, v)).collect();
    match result {
        Ok(config) => {
            prop_assert!(bad.is_empty(), "accepted invalid {:?}", bad);
            let get = |var: &str| vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v);
            let mode = get("HYTM_MODE").map_or(Some(Mode::Auto), |v| model_mode(v));
            prop_assert_eq!(Some(config.requested_mode()), mode);
            let rules: Vec<(AbortCause, f64)> = config
                .injections()
                .iter()
                .map(|i| (i.cause, i.probability))
                .collect();
            let want = get("HYTM_INJECT").map_or(Some((Vec::new(), 0.0)), |v| model_inject(v));
            prop_assert_eq!(Some((rules, config.rollback_probability())), want);
            let stats = get("HYTM_STATS").map_or(Some(StatsOutput::None), |v| model_stats(v));
            prop_assert_eq!(Some(config.stats().clone()), stats);
            // What was accepted also passes the builder's validation.
            prop_assert!(config.validate().is_ok(), "{:?}", config.validate());
        }
        Err(err) => {
            prop_assert!(!bad.is_empty(), "refused valid input {:?}: {}", vars, err);
            // The error names one of the bad variables, with its value.
            let (var, value) = bad
                .iter()
                .find(|(k, _)| *k == err.setting())
                .map(|(k, v)| (*k, v.as_str()))
                .ok_or_else(|| {
                    TestCaseError::fail(format!(
                        "error names {:?}, not one of the bad variables {bad:?}",
                        err.setting()
                    ))
                })?;
            check_error(&err, var, value)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Generators: arbitrary text, and near-valid text from the grammar's pieces.

fn whitespace() -> impl Strategy<Value = &'static str> {
    select(&["", "", "", " ", "  ", "\t", "\n", "\u{a0}", "\u{3000}"][..])
}

fn arbitrary_text() -> BoxedStrategy<String> {
    prop_oneof![any::<String>(), "[ -~]{0,24}", "[a-z:,.0-9 ]{0,24}",].boxed()
}

fn mode_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(&MODES[..]).prop_map(str::to_string),
        2 => (whitespace(), select(&MODES[..]), whitespace())
            .prop_map(|(a, m, b)| format!("{a}{m}{b}")),
        1 => select(&MODES[..]).prop_map(str::to_uppercase),
        1 => select(&["", "hardware", "rtm", "off", "tsx", "Fallback", "autoo"][..])
            .prop_map(str::to_string),
        3 => arbitrary_text(),
    ]
    .boxed()
}

/// Probability texts: valid ones of every float spelling, and near misses.
fn probability_text() -> BoxedStrategy<String> {
    const SPELLINGS: &[&str] = &[
        "0",
        "1",
        "1.0",
        "0.5",
        ".5",
        "5.",
        "+0.1",
        "-0",
        "-0.0",
        "0e0",
        "1e-3",
        "1E-2",
        "1e0",
        "10e-1",
        "0.1e1",
        "1.",
        "1.e-1",
        "000.25",
        "1.0000000000000001",
        "1.0000001",
        "0.99999999999999999999",
        "-1e-300",
        "1e-400",
        "0e999999",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "+Infinity",
        "2",
        "0x1",
        "",
        ".",
        " ",
        "1_0",
        "0,5",
        "e1",
        "1e",
        "1e+",
        "+",
        "-",
        "++1",
        "0..5",
        "1.5",
        "-0.1",
        "٠.5",
        "0.5.",
        "0.5e",
        ".e1",
    ];
    prop_oneof![
        8 => (0.0..=0.3f64).prop_map(|p| p.to_string()),
        3 => select(SPELLINGS).prop_map(str::to_string),
        1 => any::<f64>().prop_map(|p| p.to_string()),
        1 => any::<f64>().prop_map(|p| format!("{p:e}")),
        1 => "[-+0-9.eE]{0,8}",
        1 => "[a-zA-Z0-9_.,:]{0,6}",
    ]
    .boxed()
}

fn cause_text() -> BoxedStrategy<String> {
    prop_oneof![
        16 => select(&CAUSES[..]).prop_map(str::to_string),
        2 => Just("rollback".to_string()),
        1 => select(&CAUSES[..]).prop_map(str::to_uppercase),
        1 => select(&["", "conflicts", "abort", "status0", "0", "capacity "][..])
            .prop_map(str::to_string),
        1 => "[a-z]{0,9}",
    ]
    .boxed()
}

/// One `cause:probability` item, with whitespace and separators varied.
fn rule_text() -> impl Strategy<Value = String> {
    (
        whitespace(),
        cause_text(),
        whitespace(),
        prop_oneof![
            8 => Just(":"),
            1 => Just(" : "),
            1 => select(&["", "::", "=", ";"][..]),
        ],
        whitespace(),
        probability_text(),
        whitespace(),
    )
        .prop_map(|(a, c, b, sep, d, p, e)| format!("{a}{c}{b}{sep}{d}{p}{e}"))
}

fn inject_text() -> BoxedStrategy<String> {
    let joiner = prop_oneof![
        8 => Just(","),
        2 => select(&[", ", " ,", "\t,\n"][..]),
        1 => select(&[",,", ";", "", " "][..]),
    ];
    let list = prop::collection::vec((rule_text(), joiner), 0..5).prop_map(|items| {
        let n = items.len();
        items
            .into_iter()
            .enumerate()
            .map(|(i, (rule, join))| if i + 1 < n { rule + join } else { rule })
            .collect::<String>()
    });
    prop_oneof![
        6 => list,
        1 => select(&["", " ", "\t", ",", " , "][..]).prop_map(str::to_string),
        2 => arbitrary_text(),
    ]
    .boxed()
}

fn stats_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(&[
            "", "stderr", "json:", "json:/tmp/hytm.json", "json: ", "json::", "json",
            "STDERR", "stderr ", " stderr", "stdout", "Json:/x", "json:\u{0}",
        ][..])
        .prop_map(str::to_string),
        2 => any::<String>().prop_map(|p| format!("json:{p}")),
        3 => arbitrary_text(),
    ]
    .boxed()
}

fn text_for(var: &'static str) -> BoxedStrategy<String> {
    match var {
        "HYTM_MODE" => mode_text(),
        "HYTM_INJECT" => inject_text(),
        "HYTM_STATS" => stats_text(),
        _ => unreachable!("{var}"),
    }
}

/// An environment: each variable unset or set to generated text.
fn environment() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    (
        proptest::option::of(text_for("HYTM_MODE")),
        proptest::option::of(text_for("HYTM_INJECT")),
        proptest::option::of(text_for("HYTM_STATS")),
    )
        .prop_map(|(m, i, s)| {
            [("HYTM_MODE", m), ("HYTM_INJECT", i), ("HYTM_STATS", s)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        })
}

/// Probabilities for the builder: anything, the interesting range, and the
/// edges.
fn probability() -> BoxedStrategy<f64> {
    prop_oneof![
        any::<f64>(),
        -0.5..1.5f64,
        0.0..=1.0f64,
        select(vec![
            0.0,
            -0.0,
            1.0,
            f64::EPSILON,
            1.0 + f64::EPSILON,
            1.0 - f64::EPSILON / 2.0,
            1.000_000_000_5,
            -f64::MIN_POSITIVE,
            f64::MIN_POSITIVE,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
        ]),
    ]
    .boxed()
}

fn cause() -> impl Strategy<Value = AbortCause> {
    select(AbortCause::ALL.to_vec())
}

/// Counts near each edge of the policy's ranges, and anything.
fn count() -> BoxedStrategy<u32> {
    prop_oneof![
        0u32..=3,
        995u32..=1005,
        999_995u32..=1_000_005,
        (1u32 << 20) - 3..=(1u32 << 20) + 3,
        any::<u32>(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn hytm_mode_is_checked_exactly(value in mode_text()) {
        check_lookup(&[("HYTM_MODE", value)])?;
    }

    #[test]
    fn hytm_inject_is_checked_exactly(value in inject_text()) {
        check_lookup(&[("HYTM_INJECT", value)])?;
    }

    #[test]
    fn hytm_stats_is_checked_exactly(value in stats_text()) {
        check_lookup(&[("HYTM_STATS", value)])?;
    }

    #[test]
    fn any_environment_is_checked_exactly(vars in environment()) {
        check_lookup(&vars)?;
    }

    #[test]
    fn builder_injection_probability_is_checked(cause in cause(), p in probability()) {
        let result = Config::new().inject(cause, p).validate();
        let in_range = (0.0..=1.0).contains(&p);
        match result {
            Ok(()) => prop_assert!(in_range, "accepted probability {}", p),
            Err(err) => {
                prop_assert!(!in_range, "refused probability {}: {}", p, err);
                check_builder_injection_error(&err, cause)?;
            }
        }
    }

    #[test]
    fn builder_injections_are_checked_together(
        rules in prop::collection::vec((cause(), probability()), 0..5),
    ) {
        let mut config = Config::new();
        for (cause, p) in &rules {
            config = config.inject(*cause, *p);
        }
        let all_in_range = rules.iter().all(|(_, p)| (0.0..=1.0).contains(p));
        let total: f64 = rules.iter().map(|(_, p)| p).sum();
        let ok = all_in_range && total <= 1.0 + SUM_SLACK;
        match config.validate() {
            Ok(()) => prop_assert!(ok, "accepted {:?}", rules),
            Err(err) => {
                prop_assert!(!ok, "refused {:?}: {}", rules, err);
                let causes: Vec<AbortCause> = rules.iter().map(|(c, _)| *c).collect();
                prop_assert_eq!(err.setting(), "Config::inject");
                prop_assert!(
                    causes.iter().any(|c| err.value().contains(c.name())),
                    "value {:?} names none of the rules' causes", err.value()
                );
                let msg = err.to_string();
                prop_assert!(msg.contains("Config::inject") && msg.contains(err.accepted()), "{}", msg);
            }
        }
    }

    #[test]
    fn builder_rollback_is_checked_with_the_rules(
        rollback in probability(),
        rule in (cause(), probability()),
        rule_from_env in any::<bool>(),
    ) {
        let (cause, p) = rule;
        let in_range = |x: f64| (0.0..=1.0).contains(&x);
        // The rule comes from HYTM_INJECT or from the builder; the rollback
        // always from the builder.
        let base = if rule_from_env {
            let text = format!("{}:{}", cause.name(), p);
            match Config::from_lookup(|v| (v == "HYTM_INJECT").then(|| text.clone())) {
                Ok(config) => config,
                Err(err) => {
                    prop_assert!(!in_range(p), "refused {}: {}", text, err);
                    prop_assert_eq!(err.setting(), "HYTM_INJECT");
                    return Ok(());
                }
            }
        } else {
            Config::new().inject(cause, p)
        };
        let result = base.inject_rollback(rollback).validate();
        let ok = in_range(rollback) && in_range(p) && rollback + p <= 1.0 + SUM_SLACK;
        match result {
            Ok(()) => prop_assert!(ok, "accepted rollback {} with {}:{}", rollback, cause, p),
            Err(err) => {
                prop_assert!(!ok, "refused rollback {} with {}:{}: {}", rollback, cause, p, err);
                // A bad field is named as itself; a bad sum by both places
                // its parts were set.
                let want = if !in_range(p) {
                    "Config::inject"
                } else if !in_range(rollback) {
                    "Config::inject_rollback"
                } else if rule_from_env {
                    "HYTM_INJECT and Config::inject_rollback"
                } else {
                    "Config::inject and Config::inject_rollback"
                };
                prop_assert_eq!(err.setting(), want, "{}", err);
            }
        }
    }

    #[test]
    fn policy_fields_are_checked(
        max_attempts in count(),
        capacity_attempts in count(),
        other_attempts in count(),
        max_waits in count(),
        backoff in (count(), count()),
    ) {
        let (min_spins, max_spins) = backoff;
        let policy = Policy::default()
            .max_attempts(max_attempts)
            .capacity_attempts(capacity_attempts)
            .other_attempts(other_attempts)
            .max_waits(max_waits)
            .backoff(min_spins, max_spins);
        // (field, value, lowest, highest), as documented by Policy::validate.
        let fields = [
            ("Policy::max_attempts", max_attempts, 1, 1000),
            ("Policy::capacity_attempts", capacity_attempts, 1, 1000),
            ("Policy::other_attempts", other_attempts, 1, 1000),
            ("Policy::max_waits", max_waits, 0, 1_000_000),
            ("Policy::backoff min_spins", min_spins, 0, 1 << 20),
            ("Policy::backoff max_spins", max_spins, min_spins, 1 << 20),
        ];
        let bad: Vec<_> = fields.iter().filter(|(_, v, lo, hi)| !(lo..=hi).contains(&v)).collect();
        let result = policy.validate();
        // The configuration validates its policy the same way.
        prop_assert_eq!(&Config::new().policy(policy).validate(), &result);
        match result {
            Ok(()) => prop_assert!(bad.is_empty(), "accepted {:?}", bad),
            Err(err) => {
                let (field, v, lo, hi) = bad
                    .iter()
                    .find(|(f, ..)| *f == err.setting())
                    .ok_or_else(|| TestCaseError::fail(format!(
                        "error names {:?}, not one of the bad fields {bad:?}", err.setting()
                    )))?;
                prop_assert_eq!(err.value(), v.to_string());
                prop_assert_eq!(err.accepted(), format!("{lo}..={hi}"));
                let msg = err.to_string();
                prop_assert!(msg.contains(field) && msg.contains(&format!("{lo}..={hi}")), "{}", msg);
            }
        }
    }
}

fn check_builder_injection_error(
    err: &ConfigError,
    cause: AbortCause,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(err.setting(), "Config::inject");
    prop_assert!(
        err.value().contains(cause.name()),
        "value {:?} does not name the cause {}",
        err.value(),
        cause
    );
    let msg = err.to_string();
    prop_assert!(msg.contains("Config::inject"), "{}", msg);
    prop_assert!(
        msg.contains(err.accepted()) && (msg.contains("0..=1") || msg.contains("at most 1")),
        "message does not say what is accepted: {}",
        msg
    );
    Ok(())
}

/// Hand-picked cases the generators might miss, with the model's verdict
/// spelled out, so a change of the model itself shows up here.
#[test]
fn model_agrees_with_hand_picked_cases() {
    let cases: &[(&str, &str, bool)] = &[
        ("HYTM_MODE", "fallback", true),
        ("HYTM_MODE", " fallback", false),
        ("HYTM_MODE", "Auto", false),
        ("HYTM_MODE", "", true),
        ("HYTM_INJECT", "", true),
        ("HYTM_INJECT", "  ", true),
        ("HYTM_INJECT", " conflict : 0.5 , other:0 ", true),
        ("HYTM_INJECT", "conflict:.5", true),
        ("HYTM_INJECT", "conflict:1e-2", true),
        ("HYTM_INJECT", "conflict:-0", true),
        ("HYTM_INJECT", "conflict:1", true),
        ("HYTM_INJECT", "conflict:0.5,capacity:0.5", true),
        ("HYTM_INJECT", "conflict:0.6,capacity:0.6", false),
        ("HYTM_INJECT", "conflict:1.5", false),
        ("HYTM_INJECT", "conflict:NaN", false),
        ("HYTM_INJECT", "conflict:inf", false),
        ("HYTM_INJECT", "conflict:0.1,", false),
        ("HYTM_INJECT", ",conflict:0.1", false),
        ("HYTM_INJECT", "conflict", false),
        ("HYTM_INJECT", "conflict:", false),
        ("HYTM_INJECT", ":0.1", false),
        ("HYTM_INJECT", "Conflict:0.1", false),
        ("HYTM_INJECT", "conflict:0.1:0.1", false),
        ("HYTM_INJECT", "conflict:0x1", false),
        ("HYTM_INJECT", "conflict:0,5", false),
        ("HYTM_STATS", "", true),
        ("HYTM_STATS", "stderr", true),
        ("HYTM_STATS", "json:x", true),
        ("HYTM_STATS", "json: ", true),
        ("HYTM_STATS", "json:", false),
        ("HYTM_STATS", "stderr ", false),
        ("HYTM_STATS", "stdout", false),
    ];
    for (var, value, ok) in cases {
        assert_eq!(valid(var, value), *ok, "model: {var}={value:?}");
        if let Err(e) = check_lookup(&[(var, value.to_string())]) {
            panic!("{var}={value:?}: {e}");
        }
    }
    let err = Config::new()
        .stats_output(StatsOutput::Json(PathBuf::new()))
        .validate()
        .unwrap_err();
    assert_eq!(err.setting(), "Config::stats_output");
    assert!(err.to_string().contains("Config::stats_output"), "{err}");
}

/// A configuration that fails, from the environment or the builder, leaves
/// the runtime as it was: uninitialized before the first use, and unchanged
/// after it.
#[test]
fn failed_configuration_is_never_half_applied() {
    // Before the runtime exists (no other test in this file touches it):
    // each of these fails, and none may initialize it.
    let bad: Vec<(&str, Config)> = vec![
        (
            "Config::inject",
            Config::new()
                .mode(Mode::Fallback)
                .inject(AbortCause::Conflict, 1.5),
        ),
        (
            "Config::inject",
            Config::new()
                .mode(Mode::Fallback)
                .inject(AbortCause::Conflict, 0.6)
                .inject(AbortCause::Other, 0.6),
        ),
        (
            "Policy::max_attempts",
            Config::new()
                .mode(Mode::Fallback)
                .policy(Policy::default().max_attempts(0)),
        ),
        (
            "Config::stats_output",
            Config::new()
                .mode(Mode::Fallback)
                .stats_output(StatsOutput::Json(PathBuf::new())),
        ),
        // A JSON report that could not be written at exit (no such
        // directory): refused at initialisation, not at exit.
        (
            "Config::stats_output",
            Config::new()
                .mode(Mode::Fallback)
                .stats_output(StatsOutput::Json(PathBuf::from(
                    "/nonexistent-hytm-dir/stats.json",
                ))),
        ),
        // Valid fields, unsatisfiable request: fails in resolution, after
        // validation.
        (
            "Config::mode",
            Config::new().mode(Mode::Hardware).assume_no_htm(true),
        ),
    ];
    for (setting, config) in bad {
        let err = config.install().unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
    }
    // A bad environment never gets as far as a configuration.
    let half_good = [
        ("HYTM_MODE", "fallback".to_string()),
        ("HYTM_INJECT", "conflict:0.1".to_string()),
        ("HYTM_STATS", "bogus".to_string()),
    ];
    let env = Env::new(&half_good);
    assert!(Config::from_lookup(|n| env.get(n)).is_err());

    // None of them was applied: installing the real configuration still
    // succeeds, and gives the mode it asks for.
    let config = Config::from_env().expect("the test's own HYTM_* environment is valid");
    let requested = config.requested_mode();
    config
        .install()
        .expect("a failed configuration initialized the runtime");
    let expected = match requested {
        Mode::Fallback => Mode::Fallback,
        Mode::Hardware => Mode::Hardware,
        Mode::Auto if hytm::htm().usable() => Mode::Hardware,
        Mode::Auto => Mode::Fallback,
    };
    assert_eq!(hytm::mode(), expected, "{}", hytm::mode_reason());
    let reason = hytm::mode_reason().to_string();

    // After the first use, failures change nothing either.
    let other_mode = if expected == Mode::Fallback {
        Mode::Auto
    } else {
        Mode::Fallback
    };
    assert!(Config::new().mode(other_mode).install().is_err());
    assert!(Config::new()
        .mode(other_mode)
        .inject(AbortCause::Capacity, -1.0)
        .install()
        .is_err());
    let mut runner = TestRunner::new(cases());
    runner
        .run(&environment(), |vars| {
            let env = Env::new(&vars);
            if let Ok(config) = Config::from_lookup(|n| env.get(n)) {
                prop_assert!(config.install().is_err(), "installed twice");
            }
            prop_assert_eq!(hytm::mode(), expected);
            prop_assert_eq!(hytm::mode_reason(), reason.as_str());
            prop_assert!(hytm::init().is_ok());
            Ok(())
        })
        .unwrap();
    assert_eq!(hytm::mode(), expected);
}

/// An empty value is the same as an unset variable, for all three.
#[test]
fn empty_values_are_unset_for_every_variable() {
    let unset = Config::from_lookup(|_| None).unwrap();
    for var in VARS {
        let config = Config::from_lookup(|name| (name == var).then(String::new))
            .unwrap_or_else(|e| panic!("{var}=\"\" refused: {e}"));
        assert_eq!(config, unset, "{var}=\"\"");
    }
}

/// An `HYTM_INJECT` error says which rule is wrong and how, besides the
/// whole value and the grammar.
#[test]
fn injection_errors_name_the_wrong_token() {
    let cases = [
        (
            "conflict:0.5,capacity:0.6",
            "\"conflict:0.5\" + \"capacity:0.6\" add up to 1.1, more than 1",
        ),
        (
            "rollback:0.6,other:0.3,retry:0.3",
            "\"rollback:0.6\" + \"other:0.3\" + \"retry:0.3\" add up to 1.2, more than 1",
        ),
        (
            "conflict:0.1,bogus:0.2",
            "\"bogus:0.2\": unknown cause \"bogus\"",
        ),
        (
            "conflict:0.1,capacity",
            "\"capacity\": no \":<probability>\"",
        ),
        (
            "conflict:0.1,capacity:x",
            "\"capacity:x\": \"x\" is not a probability in 0..=1",
        ),
        (
            "conflict:1.5",
            "\"conflict:1.5\": \"1.5\" is not a probability in 0..=1",
        ),
        ("conflict:0.1,", "rule 2 is empty"),
    ];
    for (value, detail) in cases {
        let err = Config::from_lookup(|name| (name == "HYTM_INJECT").then(|| value.to_string()))
            .unwrap_err();
        assert_eq!(err.setting(), "HYTM_INJECT");
        assert_eq!(err.value(), value);
        let msg = err.to_string();
        assert!(msg.contains(detail), "{value}: no {detail:?} in: {msg}");
        for word in accepted_words("HYTM_INJECT") {
            assert!(msg.contains(word), "{value}: no {word:?} in: {msg}");
        }
    }
}
