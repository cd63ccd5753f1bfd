//! Lock modes, at the bottom of the crate: every kind, the error type and the nesting record
//! name them, and this module names nothing else.

use std::fmt;

/// Exclusive (one holder) or shared (any number of shared holders, no exclusive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Exclusive,
    Shared,
}

impl LockMode {
    /// The name used in `FLOCKRUN_MODE`, `FLOCKRUN_HELD` and messages of the kinds that call
    /// their modes exclusive and shared.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Exclusive => "exclusive",
            LockMode::Shared => "shared",
        }
    }

    /// The name in a reader/writer lock's terms: `write` or `read`.
    #[must_use]
    pub fn read_write_name(self) -> &'static str {
        match self {
            LockMode::Exclusive => "write",
            LockMode::Shared => "read",
        }
    }

    /// Whether holding `self` already grants a request for `wanted`.
    #[must_use]
    pub fn covers(self, wanted: LockMode) -> bool {
        self == LockMode::Exclusive || wanted == LockMode::Shared
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
