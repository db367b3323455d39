//! Modes, configuration, `HYTM_*` environment parsing and the global runtime.
//!
//! The runtime is resolved once: from the environment at the first use of
//! any hytm type, or earlier and explicitly through [`init`] or
//! [`Config::install`]. Resolution checks every setting before applying any,
//! so a bad value never leaves a half-applied configuration.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::policy::Policy;
use crate::rtm::{AbortCause, Rtm};

/// Which path critical sections and transactions take.
///
/// ```
/// use hytm::Mode;
/// assert_eq!("fallback".parse::<Mode>().unwrap(), Mode::Fallback);
/// let err = "bogus".parse::<Mode>().unwrap_err();
/// assert!(err.to_string().contains("auto|htm|fallback"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Hardware transactions where RTM is usable, the fallback otherwise.
    #[default]
    Auto,
    /// Hardware transactions; an error where RTM is not usable (never a
    /// silent downgrade).
    Hardware,
    /// The software fallback only: no `xbegin` ever executes.
    Fallback,
}

impl Mode {
    /// The name `HYTM_MODE` accepts for this mode.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Hardware => "htm",
            Mode::Fallback => "fallback",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Mode, ConfigError> {
        match s {
            "auto" => Ok(Mode::Auto),
            "htm" => Ok(Mode::Hardware),
            "fallback" => Ok(Mode::Fallback),
            _ => Err(ConfigError::invalid(ENV_MODE, s, "auto|htm|fallback")),
        }
    }
}

/// A configuration value that cannot be used.
///
/// It names the setting (an environment variable or a `Config` field), the
/// value given and what is accepted.
///
/// ```
/// let err = hytm::Config::from_lookup(|name| (name == "HYTM_MODE").then(|| "bogus".to_string()))
///     .unwrap_err();
/// assert_eq!(err.setting(), "HYTM_MODE");
/// assert_eq!(err.value(), "bogus");
/// assert_eq!(err.to_string(), "invalid HYTM_MODE=\"bogus\": accepted values are auto|htm|fallback");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: String,
    value: String,
    accepted: String,
    problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Problem {
    Invalid,
    /// Invalid, and this part of the value is what is wrong.
    InvalidPart(String),
    Unsatisfiable(String),
    AlreadyInstalled,
}

impl ConfigError {
    pub(crate) fn invalid(setting: &str, value: &str, accepted: &str) -> ConfigError {
        ConfigError {
            setting: setting.to_string(),
            value: value.to_string(),
            accepted: accepted.to_string(),
            problem: Problem::Invalid,
        }
    }

    fn invalid_part(setting: &str, value: &str, accepted: &str, detail: String) -> ConfigError {
        ConfigError {
            problem: Problem::InvalidPart(detail),
            ..ConfigError::invalid(setting, value, accepted)
        }
    }

    fn already_installed() -> ConfigError {
        ConfigError {
            setting: "Config::install".into(),
            value: String::new(),
            accepted: "call hytm::init or Config::install first".into(),
            problem: Problem::AlreadyInstalled,
        }
    }

    /// The setting: an environment variable such as `HYTM_MODE`, or a
    /// configuration field such as `Config::mode`.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// The value that was given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting accepts.
    pub fn accepted(&self) -> &str {
        &self.accepted
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            setting,
            value,
            accepted,
            ..
        } = self;
        match &self.problem {
            Problem::Invalid => write!(
                f,
                "invalid {setting}={value:?}: accepted values are {accepted}"
            ),
            Problem::InvalidPart(detail) => write!(
                f,
                "invalid {setting}={value:?}: {detail}; accepted values are {accepted}"
            ),
            Problem::Unsatisfiable(why) => write!(
                f,
                "{setting}={value:?} cannot be honoured: {why}; accepted here: {accepted}"
            ),
            Problem::AlreadyInstalled => write!(
                f,
                "the hytm runtime is already initialized; {setting} must be set before the first use ({accepted})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One abort-injection rule: abort attempts with `cause` at `probability`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Injection {
    /// The cause the injected abort reports.
    pub cause: AbortCause,
    /// Chance per hardware attempt, in `0.0..=1.0`.
    pub probability: f64,
}

/// Where the statistics report goes at process exit.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StatsOutput {
    /// No report.
    #[default]
    None,
    /// A table on standard error.
    Stderr,
    /// JSON written to this file at exit; the file is created when the
    /// runtime is installed, so a path that cannot be written is a
    /// [`ConfigError`] then.
    Json(PathBuf),
}

const ENV_MODE: &str = "HYTM_MODE";
const ENV_INJECT: &str = "HYTM_INJECT";
const ENV_STATS: &str = "HYTM_STATS";
const INJECT_ACCEPTED: &str =
    "<rule>[,...] with rule <cause>:<probability> (cause conflict|capacity|retry|explicit|nested|debug|other) or rollback:<probability>, each probability in 0..=1, adding up to at most 1";

/// The runtime configuration: mode, policy, injection, statistics output.
///
/// Build one, then [`install`](Config::install) it before the first use of
/// any hytm type; or let the first use read it from the environment
/// (`HYTM_MODE`, `HYTM_INJECT`, `HYTM_STATS`).
///
/// ```
/// use hytm::{Config, Mode};
/// let config = Config::new().mode(Mode::Fallback);
/// assert_eq!(config.requested_mode(), Mode::Fallback);
/// // config.install()?;  // once, before the first use
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    mode: Mode,
    mode_setting: &'static str,
    assume_no_htm: bool,
    injections: Vec<Injection>,
    rollback: f64,
    inject_setting: &'static str,
    rollback_setting: &'static str,
    stats: StatsOutput,
    stats_setting: &'static str,
    policy: Policy,
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl Config {
    /// Defaults: [`Mode::Auto`], no injection, no report, the default policy.
    pub fn new() -> Config {
        Config {
            mode: Mode::Auto,
            mode_setting: "Config::mode",
            assume_no_htm: false,
            injections: Vec::new(),
            rollback: 0.0,
            inject_setting: "Config::inject",
            rollback_setting: "Config::inject_rollback",
            stats: StatsOutput::None,
            stats_setting: "Config::stats_output",
            policy: Policy::default(),
        }
    }

    /// Reads `HYTM_MODE`, `HYTM_INJECT` and `HYTM_STATS` from the
    /// environment; unset variables keep their defaults, and so do
    /// variables set to the empty string.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first variable with a bad value.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], with variables looked up through `var`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first variable with a bad value.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm::{Config, Mode};
    /// let config = Config::from_lookup(|name| match name {
    ///     "HYTM_MODE" => Some("fallback".into()),
    ///     "HYTM_INJECT" => Some("conflict:0.5,other:0.01".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.requested_mode(), Mode::Fallback);
    /// assert_eq!(config.injections().len(), 2);
    /// # Ok::<(), hytm::ConfigError>(())
    /// ```
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // An empty value is the same as an unset variable, for all three
        // (so `HYTM_MODE= cargo test` or an empty CI matrix entry means
        // "the default").
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut config = Config::new();
        if let Some(v) = var(ENV_MODE) {
            config.mode = v.parse()?;
            config.mode_setting = ENV_MODE;
        }
        if let Some(v) = var(ENV_INJECT) {
            (config.injections, config.rollback) = parse_injections(&v)?;
            config.inject_setting = ENV_INJECT;
            config.rollback_setting = ENV_INJECT;
        }
        if let Some(v) = var(ENV_STATS) {
            config.stats = parse_stats(&v)?;
            config.stats_setting = ENV_STATS;
        }
        Ok(config)
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Config {
        self.mode = mode;
        self.mode_setting = "Config::mode";
        self
    }

    /// Treats RTM as unusable whatever detection says, so the no-HTM path
    /// runs (and is tested) on machines that have RTM. Detection does not
    /// even run: no `xbegin` executes.
    pub fn assume_no_htm(mut self, yes: bool) -> Config {
        self.assume_no_htm = yes;
        self
    }

    /// Adds an abort-injection rule: hardware attempts (and, without RTM,
    /// simulated ones) abort with `cause` at `probability`. Checked by
    /// [`install`](Config::install).
    pub fn inject(mut self, cause: AbortCause, probability: f64) -> Config {
        self.injections.push(Injection { cause, probability });
        self.inject_setting = "Config::inject";
        self
    }

    /// Injects rollbacks: with `probability`, an attempt runs the body to its
    /// end and then rolls it back instead of committing, proving that every
    /// write of an aborted body vanishes. In hardware the transaction aborts
    /// with [`code::ROLLBACK`](crate::rtm::code::ROLLBACK) just before
    /// `xend`; on the STM path the redo log is discarded; on the serial path
    /// the undo log is applied. Sections that run under an elided lock's real
    /// lock cannot be rolled back and are never chosen. A software or serial
    /// execution is rolled back at most once, so it always finishes. The
    /// environment form is `HYTM_INJECT=rollback:<probability>`.
    ///
    /// ```
    /// let config = hytm::Config::new().inject_rollback(0.1);
    /// assert_eq!(config.rollback_probability(), 0.1);
    /// assert!(config.validate().is_ok());
    /// assert!(hytm::Config::new().inject_rollback(1.5).validate().is_err());
    /// ```
    pub fn inject_rollback(mut self, probability: f64) -> Config {
        self.rollback = probability;
        self.rollback_setting = "Config::inject_rollback";
        self
    }

    /// Sets where the statistics report goes at process exit. A JSON file
    /// is created (empty) by [`install`](Config::install), so a path that
    /// cannot be written is an error there rather than at exit.
    pub fn stats_output(mut self, output: StatsOutput) -> Config {
        self.stats = output;
        self.stats_setting = "Config::stats_output";
        self
    }

    /// Sets the global default policy, used by every lock and transaction
    /// that was not given its own.
    pub fn policy(mut self, policy: Policy) -> Config {
        self.policy = policy;
        self
    }

    /// The mode asked for (before resolution).
    pub fn requested_mode(&self) -> Mode {
        self.mode
    }

    /// The injection rules.
    pub fn injections(&self) -> &[Injection] {
        &self.injections
    }

    /// The chance per attempt of an injected rollback; see
    /// [`inject_rollback`](Config::inject_rollback).
    ///
    /// ```
    /// let config = hytm::Config::from_lookup(|v| {
    ///     (v == "HYTM_INJECT").then(|| "rollback:0.25".to_string())
    /// })?;
    /// assert_eq!(config.rollback_probability(), 0.25);
    /// # Ok::<(), hytm::ConfigError>(())
    /// ```
    pub fn rollback_probability(&self) -> f64 {
        self.rollback
    }

    /// The setting(s) a bad sum of injection probabilities comes from:
    /// both, when the rules and the rollback were set in different places.
    fn injection_sum_setting(&self) -> &'static str {
        if self.rollback == 0.0 || self.rollback_setting == self.inject_setting {
            return self.inject_setting;
        }
        if self.injections.is_empty() {
            return self.rollback_setting;
        }
        match (self.inject_setting, self.rollback_setting) {
            (ENV_INJECT, _) => "HYTM_INJECT and Config::inject_rollback",
            (_, ENV_INJECT) => "Config::inject and HYTM_INJECT",
            _ => "Config::inject and Config::inject_rollback",
        }
    }

    fn injection_total(&self) -> f64 {
        self.rollback + self.injections.iter().map(|i| i.probability).sum::<f64>()
    }

    /// The statistics output.
    pub fn stats(&self) -> &StatsOutput {
        &self.stats
    }

    /// The global default policy.
    pub fn default_policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks every field without touching the global runtime.
    ///
    /// # Errors
    ///
    /// The first field with a bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for inj in &self.injections {
            if !(0.0..=1.0).contains(&inj.probability) {
                return Err(ConfigError::invalid(
                    self.inject_setting,
                    &format!("{}:{}", inj.cause, inj.probability),
                    INJECT_ACCEPTED,
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.rollback) {
            return Err(ConfigError::invalid(
                self.rollback_setting,
                &self.rollback.to_string(),
                "a probability in 0..=1",
            ));
        }
        if self.injection_total() > 1.0 + SUM_SLACK {
            let mut value: Vec<String> = self
                .injections
                .iter()
                .map(|i| format!("{}:{}", i.cause, i.probability))
                .collect();
            if self.rollback > 0.0 {
                value.push(format!("rollback:{}", self.rollback));
            }
            return Err(ConfigError::invalid(
                self.injection_sum_setting(),
                &value.join(","),
                "probabilities that add up to at most 1 (one draw per attempt picks at most one cause)",
            ));
        }
        if let StatsOutput::Json(path) = &self.stats {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    "Config::stats_output",
                    "json:",
                    "a non-empty path",
                ));
            }
        }
        self.policy.validate()
    }

    /// Makes this the process's configuration. Must come before the first
    /// use of any hytm type.
    ///
    /// # Errors
    ///
    /// A bad field; [`Mode::Hardware`] where RTM is not usable; or the
    /// runtime was already initialized (by an earlier `install`, [`init`]
    /// or a first use).
    ///
    /// # Examples
    ///
    /// ```
    /// hytm::Config::new().mode(hytm::Mode::Fallback).install()?;
    /// assert_eq!(hytm::mode(), hytm::Mode::Fallback);
    /// # Ok::<(), hytm::ConfigError>(())
    /// ```
    pub fn install(self) -> Result<(), ConfigError> {
        // Refuse a second installation before resolving: resolution may run
        // detection, which executes `xbegin`.
        if RUNTIME.get().is_some() {
            return Err(ConfigError::already_installed());
        }
        let runtime = Runtime::resolve(self)?;
        let mut fresh = false;
        let installed = RUNTIME.get_or_init(|| {
            fresh = true;
            runtime
        });
        if fresh {
            installed.on_installed();
            Ok(())
        } else {
            Err(ConfigError::already_installed())
        }
    }
}

/// Parses `HYTM_INJECT` into abort rules and the rollback probability. An
/// error names the rule that is wrong (or the rules whose probabilities add
/// up to more than 1).
fn parse_injections(v: &str) -> Result<(Vec<Injection>, f64), ConfigError> {
    let bad = |detail: String| ConfigError::invalid_part(ENV_INJECT, v, INJECT_ACCEPTED, detail);
    let mut rules = Vec::new();
    let mut rollback = 0.0;
    if v.trim().is_empty() {
        return Ok((rules, rollback));
    }
    let mut tokens = Vec::new();
    let mut total = 0.0;
    for (n, rule) in v.split(',').enumerate() {
        let token = rule.trim();
        if token.is_empty() {
            return Err(bad(format!("rule {} is empty", n + 1)));
        }
        let (name, p) = token
            .split_once(':')
            .ok_or_else(|| bad(format!("{token:?}: no \":<probability>\"")))?;
        let p = p.trim();
        let probability = match p.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => x,
            _ => {
                return Err(bad(format!(
                    "{token:?}: {p:?} is not a probability in 0..=1"
                )))
            }
        };
        let name = name.trim();
        if name == "rollback" {
            rollback += probability;
        } else {
            let cause = AbortCause::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| bad(format!("{token:?}: unknown cause {name:?}")))?;
            rules.push(Injection { cause, probability });
        }
        total += probability;
        tokens.push(token);
    }
    if total > 1.0 + SUM_SLACK {
        let named: Vec<String> = tokens.iter().map(|t| format!("{t:?}")).collect();
        return Err(bad(format!(
            "{} add up to {}, more than 1",
            named.join(" + "),
            short_decimal(total)
        )));
    }
    Ok((rules, rollback))
}

/// Slack the sum of injection probabilities may have over 1, for decimal
/// rounding (`0.1,0.2,0.7`).
const SUM_SLACK: f64 = 1e-9;

/// `x` with at most 6 decimals and no trailing zeros (`1.1`, not
/// `1.0999999999999999`).
fn short_decimal(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn parse_stats(v: &str) -> Result<StatsOutput, ConfigError> {
    match v {
        "" => Ok(StatsOutput::None),
        "stderr" => Ok(StatsOutput::Stderr),
        _ => match v.strip_prefix("json:") {
            Some(path) if !path.is_empty() => Ok(StatsOutput::Json(PathBuf::from(path))),
            _ => Err(ConfigError::invalid(ENV_STATS, v, "stderr|json:<path>")),
        },
    }
}

/// The resolved, process-wide runtime.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) config: Config,
    /// The token when the effective mode is hardware; `None` means every
    /// section takes the fallback.
    pub(crate) rtm: Option<Rtm>,
    /// Whether sections go through the attempt loop at all: hardware is on,
    /// or injection simulates aborts. False is the one predictable branch
    /// fallback mode costs.
    pub(crate) hardware_path: bool,
    /// Whether injected rollbacks are configured (`rollback_probability()
    /// > 0`): one byte for the software commit to test.
    pub(crate) rollbacks: bool,
    mode: Mode,
    why: String,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

impl Runtime {
    pub(crate) fn resolve(config: Config) -> Result<Runtime, ConfigError> {
        config.validate()?;
        let detected = || -> Result<Rtm, String> {
            if config.assume_no_htm {
                return Err("RTM assumed unusable by configuration (assume_no_htm)".into());
            }
            Rtm::get().ok_or_else(|| crate::htm().reason())
        };
        let (rtm, mode, why) = match config.mode {
            Mode::Fallback => (
                None,
                Mode::Fallback,
                format!("requested by {}", config.mode_setting),
            ),
            Mode::Auto => match detected() {
                Ok(rtm) if crate::rtm::MODEL => (
                    Some(rtm),
                    Mode::Hardware,
                    "HTM model, --cfg hytm_model".into(),
                ),
                Ok(rtm) => (Some(rtm), Mode::Hardware, "auto: RTM usable".into()),
                Err(why) => (None, Mode::Fallback, format!("auto: {why}")),
            },
            Mode::Hardware => match detected() {
                Ok(rtm) => (
                    Some(rtm),
                    Mode::Hardware,
                    format!("requested by {}", config.mode_setting),
                ),
                Err(why) => {
                    return Err(ConfigError {
                        setting: config.mode_setting.into(),
                        value: "htm".into(),
                        accepted: "auto|fallback".into(),
                        problem: Problem::Unsatisfiable(why),
                    })
                }
            },
        };
        if let StatsOutput::Json(path) = &config.stats {
            // Created now, so that a path the exit report could not write is
            // an error at initialisation; the report overwrites it at exit.
            if let Err(e) = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
            {
                return Err(ConfigError {
                    setting: config.stats_setting.into(),
                    value: format!("json:{}", path.display()),
                    accepted: "stderr|json:<path> with a file that can be created and written"
                        .into(),
                    problem: Problem::Unsatisfiable(format!(
                        "cannot create {}: {e}",
                        path.display()
                    )),
                });
            }
        }
        let hardware_path = rtm.is_some() || !config.injections().is_empty();
        let rollbacks = config.rollback_probability() > 0.0;
        Ok(Runtime {
            config,
            rtm,
            hardware_path,
            rollbacks,
            mode,
            why,
        })
    }

    /// Work done once, right after this runtime became the global one.
    fn on_installed(&'static self) {
        crate::stats::on_runtime_installed(&self.config);
        crate::elide::on_runtime_installed(self.hardware_path);
    }
}

/// The global runtime, resolved from the environment at the first call.
///
/// # Panics
///
/// If a `HYTM_*` variable holds a bad value, with the message of its
/// [`ConfigError`]; call [`init`] first to get it as an error instead.
#[inline]
pub(crate) fn runtime() -> &'static Runtime {
    match RUNTIME.get() {
        Some(rt) => rt,
        None => runtime_slow(),
    }
}

/// The runtime, if a transaction or [`init`] has installed it already.
#[inline]
pub(crate) fn installed() -> Option<&'static Runtime> {
    RUNTIME.get()
}

#[cold]
fn runtime_slow() -> &'static Runtime {
    match init() {
        Ok(()) => RUNTIME.get().expect("init installs the runtime"),
        Err(e) => panic!("hytm: {e}"),
    }
}

/// Reads `HYTM_*` now and installs the runtime, so that a bad value is
/// reported here rather than by a panic at the first use.
///
/// Calling it again, or after the first use, is harmless and returns
/// `Ok(())`.
///
/// # Errors
///
/// A [`ConfigError`] naming the variable, its value and the accepted values;
/// or `HYTM_MODE=htm` where RTM is not usable.
///
/// # Examples
///
/// ```
/// if let Err(e) = hytm::init() {
///     eprintln!("{e}");
///     std::process::exit(2);
/// }
/// ```
pub fn init() -> Result<(), ConfigError> {
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    match Config::from_env()?.install() {
        Err(ConfigError {
            problem: Problem::AlreadyInstalled,
            ..
        }) => Ok(()),
        other => other,
    }
}

/// The effective global mode: [`Mode::Hardware`] or [`Mode::Fallback`],
/// never `Auto` (which resolves to one of them).
///
/// ```
/// let m = hytm::mode();
/// assert_ne!(m, hytm::Mode::Auto);
/// assert_eq!(m == hytm::Mode::Hardware, hytm::htm().usable() && std::env::var("HYTM_MODE").as_deref() != Ok("fallback"));
/// ```
pub fn mode() -> Mode {
    runtime().mode
}

/// Why the effective mode is what it is, for a person (e.g.
/// `"auto: RTM not reported by CPUID"`).
///
/// ```
/// println!("{} ({})", hytm::mode(), hytm::mode_reason());
/// ```
pub fn mode_reason() -> &'static str {
    &runtime().why
}

/// The protocol the software path follows in this process, chosen once
/// with the mode.
///
/// ```
/// use hytm::StmProtocol;
/// let p = hytm::stm_protocol();
/// // Hybrid NOrec exactly when hardware transactions can run.
/// assert_eq!(p == StmProtocol::HybridNorec, hytm::mode() == hytm::Mode::Hardware);
/// println!("software path: {p}");
/// ```
pub fn stm_protocol() -> StmProtocol {
    if runtime().rtm.is_some() {
        StmProtocol::HybridNorec
    } else {
        StmProtocol::Striped
    }
}

/// The protocol of the software path (see [`stm_protocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StmProtocol {
    /// Hybrid NOrec: one sequence lock, value-based validation; safe beside
    /// hardware transactions, which touch no metadata while no software
    /// transaction runs. Used wherever hardware transactions can run (RTM,
    /// or the HTM model).
    HybridNorec,
    /// Ownership records striped over the words and a version clock
    /// (TL2/TinySTM style): commits to disjoint words do not meet on one
    /// cache line. Used where no hardware transaction can run in the
    /// process (no usable RTM, or fallback mode).
    Striped,
}

impl StmProtocol {
    /// A short name: `"hybrid-norec"` or `"striped"`.
    ///
    /// ```
    /// assert_eq!(hytm::StmProtocol::Striped.name(), "striped");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            StmProtocol::HybridNorec => "hybrid-norec",
            StmProtocol::Striped => "striped",
        }
    }
}

impl std::fmt::Display for StmProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StmProtocol::HybridNorec => "hybrid NOrec (safe beside hardware transactions)",
            StmProtocol::Striped => {
                "striped (ownership records and a version clock; no hardware path)"
            }
        })
    }
}

/// Whether this thread is inside a hardware transaction now (`xtest`).
///
/// Always `false` where RTM is not usable.
///
/// ```
/// assert!(!hytm::in_transaction());
/// ```
#[inline]
pub fn in_transaction() -> bool {
    runtime().rtm.is_some_and(|rtm| rtm.test())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_every_mode() {
        for (s, m) in [
            ("auto", Mode::Auto),
            ("htm", Mode::Hardware),
            ("fallback", Mode::Fallback),
        ] {
            let c = Config::from_lookup(lookup(&[("HYTM_MODE", s)])).unwrap();
            assert_eq!(c.requested_mode(), m);
            assert_eq!(m.name(), s);
        }
    }

    #[test]
    fn bad_values_name_the_variable_and_accepted_values() {
        let cases = [
            ("HYTM_MODE", "bogus", "auto|htm|fallback"),
            ("HYTM_INJECT", "conflict", "<cause>:<probability>"),
            ("HYTM_INJECT", "conflict:1.5", "probability in 0..=1"),
            ("HYTM_INJECT", "nosuch:0.1", "conflict|capacity"),
            ("HYTM_INJECT", "conflict:0.1,", "<cause>"),
            ("HYTM_INJECT", "conflict:NaN", "<cause>"),
            ("HYTM_STATS", "stdout", "stderr|json:<path>"),
            ("HYTM_STATS", "json:", "stderr|json:<path>"),
        ];
        for (var, value, accepted) in cases {
            let err = Config::from_lookup(lookup(&[(var, value)])).unwrap_err();
            assert_eq!(err.setting(), var);
            assert_eq!(err.value(), value);
            let msg = err.to_string();
            assert!(msg.contains(var) && msg.contains(accepted), "{msg}");
        }
    }

    #[test]
    fn injection_rules_parse() {
        let c = Config::from_lookup(lookup(&[("HYTM_INJECT", " conflict:0.5 , other:0")])).unwrap();
        assert_eq!(
            c.injections(),
            &[
                Injection {
                    cause: AbortCause::Conflict,
                    probability: 0.5
                },
                Injection {
                    cause: AbortCause::Other,
                    probability: 0.0
                },
            ]
        );
        assert!(Config::from_lookup(lookup(&[("HYTM_INJECT", "")]))
            .unwrap()
            .injections()
            .is_empty());
        let c =
            Config::from_lookup(lookup(&[("HYTM_INJECT", "rollback:0.25,capacity:0.5")])).unwrap();
        assert_eq!(c.rollback_probability(), 0.25);
        assert_eq!(c.injections().len(), 1);
        let err = Config::from_lookup(lookup(&[("HYTM_INJECT", "rollback:0.6,conflict:0.6")]))
            .unwrap_err();
        assert_eq!(err.setting(), "HYTM_INJECT");
    }

    #[test]
    fn builder_rollback_is_validated() {
        let err = Config::new()
            .inject_rollback(f64::NAN)
            .validate()
            .unwrap_err();
        assert_eq!(err.setting(), "Config::inject_rollback");
        let err = Config::new()
            .inject(AbortCause::Conflict, 0.7)
            .inject_rollback(0.7)
            .validate()
            .unwrap_err();
        assert_eq!(err.value(), "conflict:0.7,rollback:0.7");
        assert_eq!(err.setting(), "Config::inject and Config::inject_rollback");
        // Rules from the environment, rollback from the builder: both named.
        let err = Config::from_lookup(lookup(&[("HYTM_INJECT", "conflict:0.6")]))
            .unwrap()
            .inject_rollback(0.5)
            .validate()
            .unwrap_err();
        assert_eq!(err.setting(), "HYTM_INJECT and Config::inject_rollback");
        let err = Config::new().inject_rollback(0.5).inject_rollback(1.5);
        assert_eq!(
            err.validate().unwrap_err().setting(),
            "Config::inject_rollback"
        );
    }

    #[test]
    fn stats_output_parses() {
        let c = Config::from_lookup(lookup(&[("HYTM_STATS", "json:/tmp/x.json")])).unwrap();
        assert_eq!(c.stats(), &StatsOutput::Json("/tmp/x.json".into()));
    }

    #[test]
    fn builder_injection_is_validated() {
        let err = Config::new()
            .inject(AbortCause::Capacity, -0.5)
            .validate()
            .unwrap_err();
        assert_eq!(err.setting(), "Config::inject");
        assert_eq!(err.value(), "capacity:-0.5");
    }

    #[test]
    fn resolution_without_htm() {
        let rt = Runtime::resolve(Config::new().assume_no_htm(true)).unwrap();
        assert_eq!(rt.mode, Mode::Fallback);
        assert!(rt.rtm.is_none());
        assert!(rt.why.contains("assume_no_htm"));
        let err =
            Runtime::resolve(Config::new().mode(Mode::Hardware).assume_no_htm(true)).unwrap_err();
        assert_eq!(err.setting(), "Config::mode");
        assert_eq!(err.value(), "htm");
        assert!(err.to_string().contains("cannot be honoured"), "{err}");
        let rt = Runtime::resolve(Config::new().mode(Mode::Fallback)).unwrap();
        assert_eq!(rt.mode, Mode::Fallback);
    }
}
