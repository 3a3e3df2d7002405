//! The Lua scripts of the Redis backend, one file each under `scripts/`, loaded at compile time.
//! Every script starts with `scripts/prelude.lua` (key prefix, server clock); the ones that grant
//! leases or report holders also get `scripts/fencing.lua` (epoch, quarantine, grant and holder
//! helpers), so those rules are written once and the small scripts do not carry them. `redis::Script` sends
//! `EVALSHA` and falls back to loading the script when a restarted Redis answers `NOSCRIPT`.

use redis::Script;

const PRELUDE: &str = include_str!("scripts/prelude.lua");
const FENCING: &str = include_str!("scripts/fencing.lua");

/// All scripts, compiled into `Script`s (SHA-1 computed) once per registry.
pub(super) struct Scripts {
    pub put_stream: Script,
    pub delete_stream: Script,
    pub lookup: Script,
    pub acquire: Script,
    pub reclaim: Script,
    pub renew: Script,
    pub release: Script,
    pub revoke: Script,
    pub update_holder: Script,
    pub set_viewers: Script,
    pub reserve_viewer: Script,
    pub release_viewer: Script,
    pub renew_viewers: Script,
    pub live_status: Script,
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

fn with_fencing(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{FENCING}\n{body}"))
}

impl Scripts {
    /// Run by the connection on every new connection (see `connection.rs`).
    pub fn init_script() -> Script {
        with_fencing(include_str!("scripts/init.lua"))
    }

    pub fn new() -> Self {
        Scripts {
            put_stream: with_prelude(include_str!("scripts/put_stream.lua")),
            delete_stream: with_prelude(include_str!("scripts/delete_stream.lua")),
            lookup: with_prelude(include_str!("scripts/lookup.lua")),
            acquire: with_fencing(include_str!("scripts/acquire.lua")),
            reclaim: with_fencing(include_str!("scripts/reclaim.lua")),
            renew: with_prelude(include_str!("scripts/renew.lua")),
            release: with_prelude(include_str!("scripts/release.lua")),
            revoke: with_prelude(include_str!("scripts/revoke.lua")),
            update_holder: with_prelude(include_str!("scripts/update_holder.lua")),
            set_viewers: with_prelude(include_str!("scripts/set_viewers.lua")),
            reserve_viewer: with_prelude(include_str!("scripts/reserve_viewer.lua")),
            release_viewer: with_prelude(include_str!("scripts/release_viewer.lua")),
            renew_viewers: with_prelude(include_str!("scripts/renew_viewers.lua")),
            live_status: with_fencing(include_str!("scripts/live_status.lua")),
        }
    }
}
