//! Detecting whether RTM can be used: CPUID facts through `raw-cpuid`, the
//! known-bad model list, and a live probe.
//!
//! Detection runs once per process, at the first call of [`htm`]. The probe
//! executes `xbegin` only after CPUID reported RTM, RTM_ALWAYS_ABORT was clear
//! and the model was not on the denylist, because on other parts the
//! instruction raises `#UD`.

use std::fmt;
use std::sync::OnceLock;
use std::time::Instant;

use crate::rtm::{AbortCause, AbortStatus, Rtm};

/// What CPUID says about the processor and its TSX support.
///
/// ```
/// let cpu = hytm::htm().cpu();
/// println!("{} family {:#x} model {:#x}: RTM {}", cpu.vendor, cpu.family, cpu.model, cpu.rtm);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuFacts {
    /// Whether the program runs on x86_64 at all; every other field is
    /// default when it does not.
    pub x86_64: bool,
    /// CPUID vendor string, e.g. `GenuineIntel`.
    pub vendor: String,
    /// Brand string, e.g. `Intel(R) Xeon(R) Platinum 8488C`, when reported.
    pub brand: String,
    /// Display family (base + extended).
    pub family: u8,
    /// Display model (base + extended).
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
    /// CPUID.07H.EBX bit 11: Restricted Transactional Memory.
    pub rtm: bool,
    /// CPUID.07H.EBX bit 4: Hardware Lock Elision prefixes.
    pub hle: bool,
    /// CPUID.07H.EDX bit 11: RTM always aborts (TSX disabled by microcode).
    pub rtm_always_abort: bool,
    /// CPUID.07H.EDX bit 13: the TSX_FORCE_ABORT MSR exists. Microcode
    /// that has it can be told (by the kernel, when perf needs PMC3) to
    /// abort every RTM transaction.
    pub tsx_force_abort: bool,
    /// Bit 0 (RTM_FORCE_ABORT) of that MSR (0x10F): `Some(true)` while
    /// every RTM transaction is forced to abort. `None` where it cannot be
    /// read (no such MSR, or no access to `/dev/cpu/0/msr`: the msr driver
    /// and root are needed); the live probe decides then.
    pub rtm_force_abort: Option<bool>,
    /// CPUID.07H.EDX bit 16: XSUSLDTRK/XRESLDTRK.
    pub tsxldtrk: bool,
    /// CPUID.01H.ECX bit 31: running under a hypervisor.
    pub hypervisor: bool,
}

impl CpuFacts {
    /// Reads the facts of the CPU running this thread.
    /// Under Miri (which cannot run `cpuid`) this reports a machine that is
    /// not x86_64.
    pub fn read() -> CpuFacts {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            let mut facts = Self::read_from(raw_cpuid::CpuIdReaderNative);
            if facts.tsx_force_abort {
                facts.rtm_force_abort = Self::read_rtm_force_abort();
            }
            facts
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        {
            CpuFacts::not_x86_64()
        }
    }

    /// The facts of a machine that is not x86_64.
    pub fn not_x86_64() -> CpuFacts {
        CpuFacts {
            x86_64: false,
            vendor: String::new(),
            brand: String::new(),
            family: 0,
            model: 0,
            stepping: 0,
            rtm: false,
            hle: false,
            rtm_always_abort: false,
            tsx_force_abort: false,
            rtm_force_abort: None,
            tsxldtrk: false,
            hypervisor: false,
        }
    }

    /// Reads the facts through any CPUID reader, so tests can feed
    /// synthetic leaves.
    pub fn read_from<R: raw_cpuid::CpuIdReader>(reader: R) -> CpuFacts {
        let cpuid = raw_cpuid::CpuId::with_cpuid_reader(reader.clone());
        let vendor = cpuid
            .get_vendor_info()
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let brand = cpuid
            .get_processor_brand_string()
            .map(|b| b.as_str().trim().to_string())
            .unwrap_or_default();
        let (family, model, stepping, hypervisor) = cpuid
            .get_feature_info()
            .map(|f| {
                (
                    f.family_id(),
                    f.model_id(),
                    f.stepping_id(),
                    f.has_hypervisor(),
                )
            })
            .unwrap_or_default();
        let (rtm, hle) = cpuid
            .get_extended_feature_info()
            .map(|e| (e.has_rtm(), e.has_hle()))
            .unwrap_or_default();
        // raw-cpuid drops the EDX bits of leaf 7 it has no name for
        // (`from_bits_truncate`), so read that register through the same
        // reader, when the leaf exists.
        let edx7 = if cpuid.get_extended_feature_info().is_some() {
            reader.cpuid2(7, 0).edx
        } else {
            0
        };
        CpuFacts {
            x86_64: true,
            vendor,
            brand,
            family,
            model,
            stepping,
            rtm,
            hle,
            rtm_always_abort: edx7 & (1 << 11) != 0,
            tsx_force_abort: edx7 & (1 << 13) != 0,
            rtm_force_abort: None,
            tsxldtrk: edx7 & (1 << 16) != 0,
            hypervisor,
        }
    }

    /// Reads RTM_FORCE_ABORT (MSR 0x10F, bit 0) where the MSR exists and
    /// `/dev/cpu/0/msr` can be read; `None` otherwise. Used on x86_64
    /// outside Miri only (see `read`).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    fn read_rtm_force_abort() -> Option<bool> {
        const MSR_TSX_FORCE_ABORT: u64 = 0x10f;
        #[cfg(all(target_os = "linux", not(miri)))]
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open("/dev/cpu/0/msr").ok()?;
            let mut buf = [0u8; 8];
            f.read_exact_at(&mut buf, MSR_TSX_FORCE_ABORT).ok()?;
            Some(u64::from_le_bytes(buf) & 1 == 1)
        }
        #[cfg(not(all(target_os = "linux", not(miri))))]
        {
            let _ = MSR_TSX_FORCE_ABORT;
            None
        }
    }

    /// Whether the model is on the denylist of parts whose TSX is broken,
    /// with the erratum. This is the list glibc applies
    /// (`sysdeps/x86/cpu-features.c`) and libitm's Haswell subset of it.
    ///
    /// ```
    /// let mut cpu = hytm::CpuFacts::not_x86_64();
    /// cpu.x86_64 = true;
    /// cpu.vendor = "GenuineIntel".into();
    /// cpu.family = 6;
    /// cpu.model = 0x3c; // Haswell client
    /// assert!(cpu.denylisted().is_some());
    /// ```
    pub fn denylisted(&self) -> Option<&'static str> {
        if self.vendor != "GenuineIntel" || self.family != 6 {
            return None;
        }
        match (self.model, self.stepping) {
            // Haswell: erratum HSD136/HSW136; Xeon E7 v3 (0x3f) is fixed from
            // stepping 4.
            (0x3c | 0x45 | 0x46, _) => Some("Haswell TSX erratum (HSD136)"),
            (0x3f, s) if s < 4 => Some("Haswell-EP TSX erratum (HSD136), stepping < 4"),
            // Skylake-SP/Cascade Lake up to stepping 5 (SKX erratum).
            (0x55, s) if s <= 5 => Some("Skylake-SP TSX erratum, stepping <= 5"),
            // Client Skylake/Kaby/Coffee/Whiskey Lake: TSX disabled by the
            // microcode of Intel advisory 000059422 (TAA, SRBDS).
            (0x4e | 0x5e, _) => Some("Skylake client: TSX disabled by Intel advisory 000059422"),
            (0x8e | 0x9e, s) if s <= 0xc => {
                Some("Kaby/Coffee Lake client: TSX disabled by Intel advisory 000059422")
            }
            _ => None,
        }
    }
}

/// The live probe: trivial transactions on pre-faulted memory.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// Transactions started.
    pub attempts: u32,
    /// Transactions that committed.
    pub commits: u32,
    /// Aborts by cause, indexed like [`AbortCause::ALL`].
    pub aborts: [u32; 7],
    /// The first abort status seen, if any.
    pub first_abort: Option<AbortStatus>,
    /// Mean cost of one begin + store + commit, in nanoseconds.
    pub ns_per_commit: f64,
}

impl ProbeResult {
    /// Attempts in one probe.
    pub const ATTEMPTS: u32 = 1000;
    /// Share of commits below which RTM is declared unusable. Under a
    /// hypervisor interrupts and VM exits abort a trickle of transactions
    /// (status 0); a working part commits well above 99% of empty ones, a
    /// part with TSX forced off commits none.
    pub const MIN_COMMIT_SHARE: f64 = 0.90;

    /// Whether enough transactions committed.
    pub fn passed(&self) -> bool {
        self.attempts > 0
            && f64::from(self.commits) >= Self::MIN_COMMIT_SHARE * f64::from(self.attempts)
    }

    /// Runs the probe.
    fn run(rtm: Rtm) -> ProbeResult {
        // Pre-fault the cache lines the transactions write: a first touch of
        // a page aborts every time (the fault is serviced only outside).
        // `vec![0; n]` may come from calloc without writing the pages, so
        // write every element non-transactionally first.
        let mut buf = vec![0u64; 64];
        for x in buf.iter_mut() {
            // SAFETY: `x` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(x, 1) };
        }
        let mut result = ProbeResult {
            attempts: 0,
            commits: 0,
            aborts: [0; 7],
            first_abort: None,
            ns_per_commit: 0.0,
        };
        // Instant::now() before its first call may fault in the vDSO page;
        // call it before timing anything.
        let start = Instant::now();
        for i in 0..Self::ATTEMPTS {
            result.attempts += 1;
            match rtm.begin() {
                Ok(()) => {
                    buf[(i % 64) as usize] = u64::from(i);
                    // SAFETY: begin() returned Ok: we are in a transaction.
                    unsafe { rtm.end() };
                    result.commits += 1;
                }
                Err(status) => {
                    result.aborts[status.cause().index()] += 1;
                    result.first_abort.get_or_insert(status);
                }
            }
        }
        let elapsed = start.elapsed();
        std::hint::black_box(&buf);
        result.ns_per_commit = elapsed.as_nanos() as f64 / f64::from(Self::ATTEMPTS);
        result
    }
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} committed, {:.1} ns per transaction",
            self.commits, self.attempts, self.ns_per_commit
        )?;
        let aborted: Vec<String> = AbortCause::ALL
            .iter()
            .filter(|c| self.aborts[c.index()] > 0)
            .map(|c| format!("{} {}", self.aborts[c.index()], c))
            .collect();
        if !aborted.is_empty() {
            write!(f, "; aborts: {}", aborted.join(", "))?;
        }
        if let Some(s) = self.first_abort {
            write!(f, "; first abort: {s}")?;
        }
        Ok(())
    }
}

/// Why RTM is or is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// CPUID, denylist and probe all agree: transactions run.
    Usable,
    /// The program is not running on x86_64.
    NotX86_64,
    /// CPUID does not report RTM.
    NoRtm,
    /// RTM_ALWAYS_ABORT is set: microcode disabled TSX.
    AlwaysAbort,
    /// The model is on the known-bad list.
    Denylisted(&'static str),
    /// The live probe committed too few transactions.
    ProbeFailed,
    /// TSX_FORCE_ABORT's RTM_FORCE_ABORT bit is set: every transaction
    /// aborts (the kernel gave the PMU counter TSX needs to perf).
    ForceAbort,
    /// This build runs RTM on the HTM model (`--cfg hytm_model`): usable on
    /// every CPU, and no real transaction runs.
    Model,
}

/// The result of HTM detection: CPU facts, the probe and the verdict.
///
/// ```
/// let info = hytm::htm();
/// println!("RTM usable: {} ({})", info.usable(), info.reason());
/// assert_eq!(info.usable(), info.reason() == "RTM usable");
/// ```
#[derive(Clone, Debug)]
pub struct HtmInfo {
    cpu: CpuFacts,
    probe: Option<ProbeResult>,
    verdict: Verdict,
}

impl HtmInfo {
    /// Detects now, without caching: reads CPUID and, if it allows, probes.
    /// Prefer [`htm`], which does this once per process.
    pub fn detect() -> HtmInfo {
        let cpu = CpuFacts::read();
        if crate::rtm::MODEL {
            // SAFETY: under the model the instructions are simulated; they
            // run on every CPU.
            let rtm = unsafe { Rtm::new_unchecked() };
            return HtmInfo {
                cpu,
                probe: Some(ProbeResult::run(rtm)),
                verdict: Verdict::Model,
            };
        }
        let verdict = Self::cpuid_verdict(&cpu);
        if verdict != Verdict::Usable {
            return HtmInfo {
                cpu,
                probe: None,
                verdict,
            };
        }
        // Code that runs only inside transactions (a section's exit, nested
        // entry, the held set, the probe's callees) must be mapped before
        // a transaction first runs it: a page fault inside a transaction is
        // not serviced, so every attempt would abort, for good.
        prefault_own_code();
        // SAFETY: CPUID reports RTM, RTM_ALWAYS_ABORT is clear and the model
        // is not denylisted, so xbegin does not raise #UD.
        let rtm = unsafe { Rtm::new_unchecked() };
        let probe = ProbeResult::run(rtm);
        let verdict = if probe.passed() {
            Verdict::Usable
        } else {
            Verdict::ProbeFailed
        };
        HtmInfo {
            cpu,
            probe: Some(probe),
            verdict,
        }
    }

    /// The verdict CPUID alone gives, before any probe.
    ///
    /// ```
    /// use hytm::{CpuFacts, HtmInfo, Verdict};
    /// let mut cpu = CpuFacts::not_x86_64();
    /// assert_eq!(HtmInfo::cpuid_verdict(&cpu), Verdict::NotX86_64);
    /// cpu.x86_64 = true;
    /// assert_eq!(HtmInfo::cpuid_verdict(&cpu), Verdict::NoRtm);
    /// cpu.rtm = true;
    /// cpu.rtm_always_abort = true;
    /// assert_eq!(HtmInfo::cpuid_verdict(&cpu), Verdict::AlwaysAbort);
    /// ```
    pub fn cpuid_verdict(cpu: &CpuFacts) -> Verdict {
        if !cpu.x86_64 || !cfg!(hytm_rtm) {
            Verdict::NotX86_64
        } else if !cpu.rtm {
            Verdict::NoRtm
        } else if cpu.rtm_always_abort {
            Verdict::AlwaysAbort
        } else if cpu.tsx_force_abort && cpu.rtm_force_abort == Some(true) {
            Verdict::ForceAbort
        } else if let Some(why) = cpu.denylisted() {
            Verdict::Denylisted(why)
        } else {
            Verdict::Usable
        }
    }

    /// Whether hardware transactions can run here.
    pub fn usable(&self) -> bool {
        matches!(self.verdict, Verdict::Usable | Verdict::Model)
    }

    /// The verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Why RTM is or is not usable, for a person.
    pub fn reason(&self) -> String {
        match &self.verdict {
            Verdict::Usable => "RTM usable".to_string(),
            Verdict::Model => {
                "HTM model (built with --cfg hytm_model): RTM simulated in software, no real transaction runs".to_string()
            }
            Verdict::NotX86_64 if cfg!(target_arch = "x86_64") => {
                "RTM instructions compiled out (Miri or loom build)".to_string()
            }
            Verdict::NotX86_64 => "not x86_64".to_string(),
            Verdict::NoRtm => "RTM not reported by CPUID".to_string(),
            Verdict::AlwaysAbort => "RTM_ALWAYS_ABORT set (TSX disabled by microcode)".to_string(),
            Verdict::ForceAbort => {
                "TSX_FORCE_ABORT: RTM_FORCE_ABORT set (every transaction aborts; see /sys/devices/cpu/allow_tsx_force_abort)".to_string()
            }
            Verdict::Denylisted(why) => format!("model on the TSX denylist: {why}"),
            Verdict::ProbeFailed => match &self.probe {
                Some(p) => format!(
                    "probe: {} of {} committed{}{}",
                    p.commits,
                    p.attempts,
                    p.first_abort.map(|s| format!(", {s}")).unwrap_or_default(),
                    if self.cpu.tsx_force_abort {
                        " (TSX_FORCE_ABORT reported: RTM_FORCE_ABORT is likely set)"
                    } else {
                        ""
                    }
                ),
                None => "probe failed".to_string(),
            },
        }
    }

    /// The CPU facts.
    pub fn cpu(&self) -> &CpuFacts {
        &self.cpu
    }

    /// The probe result, if the probe ran (only when CPUID allowed it).
    pub fn probe(&self) -> Option<&ProbeResult> {
        self.probe.as_ref()
    }
}

/// Reads one byte of every page of the executable segments of the object
/// that holds this crate's code, so that those pages are mapped. Returns
/// the range of addresses touched and the number of pages; `(0, 0, 0)`
/// where it cannot tell (not Linux, Miri).
fn prefault_own_code() -> (usize, usize, usize) {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        struct Found {
            target: usize,
            range: (usize, usize, usize),
        }
        unsafe extern "C" fn visit(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: dl_iterate_phdr passes a valid info for each loaded
            // object, and `data` is the `Found` we passed in.
            let (info, found) = unsafe { (&*info, &mut *(data as *mut Found)) };
            let base = info.dlpi_addr as usize;
            // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
            let headers =
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
            let code =
                |h: &&libc::Elf64_Phdr| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0;
            let ours = headers.iter().filter(code).any(|h| {
                let start = base + h.p_vaddr as usize;
                (start..start + h.p_memsz as usize).contains(&found.target)
            });
            if !ours {
                return 0;
            }
            const PAGE: usize = 4096;
            let (mut lo, mut hi, mut pages) = (usize::MAX, 0, 0);
            for h in headers.iter().filter(code) {
                let start = (base + h.p_vaddr as usize) & !(PAGE - 1);
                let end = base + (h.p_vaddr + h.p_memsz) as usize;
                for page in (start..end).step_by(PAGE) {
                    // SAFETY: the page belongs to a loaded, executable
                    // (hence readable) segment of this object.
                    unsafe { std::ptr::read_volatile(page as *const u8) };
                    pages += 1;
                }
                (lo, hi) = (lo.min(start), hi.max(end));
            }
            found.range = (lo, hi, pages);
            1
        }
        let mut found = Found {
            target: prefault_own_code as *const () as usize,
            range: (0, 0, 0),
        };
        // SAFETY: `visit` matches the callback type and only reads what
        // dl_iterate_phdr hands it; `found` outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(visit), &mut found as *mut Found as *mut libc::c_void)
        };
        found.range
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    {
        (0, 0, 0)
    }
}

/// HTM detection, done once per process at the first call.
///
/// This reports the hardware; whether the runtime uses it also depends on
/// the [`crate::Mode`] (see [`crate::mode`]).
///
/// ```
/// let info = hytm::htm();
/// if !info.usable() {
///     println!("everything runs on the fallback: {}", info.reason());
/// }
/// ```
pub fn htm() -> &'static HtmInfo {
    static INFO: OnceLock<HtmInfo> = OnceLock::new();
    INFO.get_or_init(HtmInfo::detect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intel(model: u8, stepping: u8) -> CpuFacts {
        CpuFacts {
            x86_64: true,
            vendor: "GenuineIntel".into(),
            family: 6,
            model,
            stepping,
            rtm: true,
            ..CpuFacts::not_x86_64()
        }
    }

    #[test]
    fn denylist_matches_glibc() {
        assert!(intel(0x3c, 3).denylisted().is_some());
        assert!(intel(0x3f, 2).denylisted().is_some());
        assert!(intel(0x3f, 4).denylisted().is_none());
        assert!(intel(0x55, 5).denylisted().is_some());
        assert!(intel(0x55, 7).denylisted().is_none());
        assert!(intel(0x9e, 0xc).denylisted().is_some());
        assert!(intel(0x9e, 0xd).denylisted().is_none());
        assert!(intel(0x8f, 8).denylisted().is_none()); // Sapphire Rapids
        let mut amd = intel(0x3c, 3);
        amd.vendor = "AuthenticAMD".into();
        assert!(amd.denylisted().is_none());
    }

    #[test]
    fn the_code_of_the_hardware_paths_is_prefaulted() {
        let (lo, hi, pages) = prefault_own_code();
        if cfg!(any(not(target_os = "linux"), miri)) {
            return; // compiled out there
        }
        assert!(pages > 0);
        // This crate's code is in the range touched (the whole executable
        // segment of the object holding it).
        for f in [
            prefault_own_code as *const () as usize,
            crate::tx::software_committing as *const () as usize,
        ] {
            assert!((lo..hi).contains(&f), "{f:#x} outside {lo:#x}..{hi:#x}");
        }
    }

    #[test]
    fn tsx_force_abort_is_honoured() {
        if !cfg!(hytm_rtm) {
            // The model and the stub have no CPUID verdict to give.
            return;
        }
        let mut cpu = intel(0x8e, 0xd);
        cpu.tsx_force_abort = true;
        // Unknown MSR state: the probe decides.
        assert_eq!(HtmInfo::cpuid_verdict(&cpu), Verdict::Usable);
        cpu.rtm_force_abort = Some(false);
        assert_eq!(HtmInfo::cpuid_verdict(&cpu), Verdict::Usable);
        cpu.rtm_force_abort = Some(true);
        assert_eq!(HtmInfo::cpuid_verdict(&cpu), Verdict::ForceAbort);
    }

    #[test]
    fn verdict_reasons_read_well() {
        let info = |verdict, probe| HtmInfo {
            cpu: intel(0x8f, 8),
            probe,
            verdict,
        };
        assert_eq!(
            info(Verdict::NoRtm, None).reason(),
            "RTM not reported by CPUID"
        );
        let probe = ProbeResult {
            attempts: 1000,
            commits: 0,
            aborts: [0, 0, 0, 0, 0, 0, 1000],
            first_abort: Some(AbortStatus::from_raw(0)),
            ns_per_commit: 40.0,
        };
        assert!(!probe.passed());
        assert!(info(Verdict::ProbeFailed, Some(probe))
            .reason()
            .starts_with("probe: 0 of 1000 committed, status 0"));
    }

    #[test]
    fn this_machine_has_consistent_facts() {
        let info = htm();
        if info.usable() {
            let p = info.probe().expect("usable implies probed");
            assert!(p.passed());
            assert!(info.cpu().rtm || crate::rtm::MODEL);
        } else {
            println!("skip: RTM not usable here: {}", info.reason());
        }
    }
}
