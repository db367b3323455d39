//! Helpers shared by the integration tests.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    static SILENT: Cell<bool> = const { Cell::new(false) };
}

/// Silences panic messages on the calling thread only. The default hook
/// writes to stderr, which would abort a hardware transaction by itself; a
/// silent hook lets the runtime's own abort be what a panic test exercises.
/// Other threads (other tests) keep the default hook, so their failures
/// still print.
pub fn silence_panics_on_this_thread() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !SILENT.with(Cell::get) {
                default(info);
            }
        }));
    });
    SILENT.with(|s| s.set(true));
}
