//! The planted bugs (`inject=NAME`): real mistakes of the kind the torture test must catch,
//! each switched on by name (`inject=list` lists them).

use core::fmt;

/// A bug planted on purpose (`inject=NAME`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Bug {
    MissingRecheck,
    NonAtomicCounter,
    LostWakeup,
}

/// Every planted bug: its `inject=` name, and what it does.
pub(super) const BUGS: [(Bug, &str, &str); 3] = [
    (
        Bug::MissingRecheck,
        "missing-recheck",
        "a woken work-queue consumer pops without checking again that an item is there",
    ),
    (
        Bug::NonAtomicCounter,
        "non-atomic-counter",
        "the shared counter is incremented as load; call; store, without its mutex",
    ),
    (
        Bug::LostWakeup,
        "lost-wakeup",
        "a work-queue producer unregisters a waiting consumer but forgets to send it its token",
    ),
];

impl Bug {
    pub(super) fn from_name(name: &str) -> Option<Bug> {
        BUGS.iter().find(|(_, n, _)| *n == name).map(|(bug, _, _)| *bug)
    }

    pub(super) fn name(self) -> &'static str {
        BUGS.iter().find(|(bug, _, _)| *bug == self).map_or("?", |(_, name, _)| name)
    }
}

/// The names of the planted bugs, comma-separated (for messages).
pub(super) struct BugNames;

impl fmt::Display for BugNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (_, name, _)) in BUGS.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}
