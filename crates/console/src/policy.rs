//! Who may drive a shared console, and what each viewer is told about it.
//!
//! [`Control`] is pure bookkeeping (no I/O, no clock), so the rules for several controllers are
//! tested here on their own; the hub asks it on every input and every join and leave.

use std::fmt;
use std::str::FromStr;

use crate::hub::Role;

/// What happens when several viewers with the control role watch one VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ControllerPolicy {
    /// Only the newest controller's input reaches the VM; the earlier ones watch until they
    /// reconnect. When the one in control leaves, nobody gets control by surprise: the others
    /// stay watch-only until one of them reconnects (fail safe).
    #[default]
    TakeOver,
    /// Every controller's input reaches the VM.
    Shared,
}

impl ControllerPolicy {
    /// The flag value: `take-over` or `shared`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TakeOver => "take-over",
            Self::Shared => "shared",
        }
    }
}

impl fmt::Display for ControllerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is neither `take-over` nor `shared`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown console controller policy {0:?} (expected take-over or shared)")]
pub struct UnknownPolicy(pub String);

impl FromStr for ControllerPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "take-over" => Ok(Self::TakeOver),
            "shared" => Ok(Self::Shared),
            other => Err(UnknownPolicy(other.to_string())),
        }
    }
}

/// What one viewer may do right now, as it is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViewerState {
    /// Take-over: this viewer is the one in control.
    InControl,
    /// Shared policy: this controller's input reaches the VM along with the others'.
    SharedControl,
    /// An observer.
    ViewOnly,
    /// Take-over: a controller whose control a newer controller took.
    ControlTaken,
}

impl ViewerState {
    /// The text in the desktop name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InControl => "you have control",
            Self::SharedControl => "shared control",
            Self::ViewOnly => "view only",
            Self::ControlTaken => "control taken by another viewer",
        }
    }

    /// Whether this viewer's input goes to the VM.
    pub const fn sends_input(self) -> bool {
        matches!(self, Self::InControl | Self::SharedControl)
    }
}

/// The desktop name a viewer is shown: `<vmi> · <state> · <N> viewer(s)`, `viewers` counting
/// every viewer of the console, this one included.
pub fn desktop_name(vmi: &str, state: ViewerState, viewers: usize) -> String {
    let plural = if viewers == 1 { "" } else { "s" };
    format!("{vmi} · {} · {viewers} viewer{plural}", state.as_str())
}

/// Which viewers of one console may send input.
#[derive(Clone, Debug, Default)]
pub struct Control {
    policy: ControllerPolicy,
    /// Take-over: the controller in control, if any.
    current: Option<u64>,
}

impl Control {
    /// No viewers yet.
    pub fn new(policy: ControllerPolicy) -> Self {
        Self {
            policy,
            current: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> ControllerPolicy {
        self.policy
    }

    /// Take-over: the controller in control, if any.
    pub fn current(&self) -> Option<u64> {
        self.current
    }

    /// Viewer `id` joined with `role`: a controller takes control (take-over).
    pub fn join(&mut self, id: u64, role: Role) {
        if role == Role::Control {
            self.current = Some(id);
        }
    }

    /// Viewer `id` left. If it was in control, nobody is (fail safe: a watching controller's
    /// keys must not start reaching the VM without it asking, by reconnecting).
    pub fn leave(&mut self, id: u64) {
        if self.current == Some(id) {
            self.current = None;
        }
    }

    /// The state of viewer `id` with `role`.
    pub fn state(&self, id: u64, role: Role) -> ViewerState {
        match (role, self.policy) {
            (Role::Observe, _) => ViewerState::ViewOnly,
            (Role::Control, ControllerPolicy::Shared) => ViewerState::SharedControl,
            (Role::Control, ControllerPolicy::TakeOver) if self.current == Some(id) => {
                ViewerState::InControl
            }
            (Role::Control, ControllerPolicy::TakeOver) => ViewerState::ControlTaken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(
            desktop_name("testvm", ViewerState::InControl, 1),
            "testvm · you have control · 1 viewer"
        );
        assert_eq!(
            desktop_name("testvm", ViewerState::SharedControl, 3),
            "testvm · shared control · 3 viewers"
        );
        assert_eq!(
            desktop_name("vm-a", ViewerState::ViewOnly, 2),
            "vm-a · view only · 2 viewers"
        );
        assert_eq!(
            desktop_name("vm-a", ViewerState::ControlTaken, 2),
            "vm-a · control taken by another viewer · 2 viewers"
        );
        assert_eq!(
            desktop_name("x", ViewerState::ViewOnly, 0),
            "x · view only · 0 viewers"
        );
    }

    #[test]
    fn policies_parse_from_their_flag_values_only() {
        for p in [ControllerPolicy::TakeOver, ControllerPolicy::Shared] {
            assert_eq!(p.as_str().parse::<ControllerPolicy>(), Ok(p));
        }
        assert_eq!(ControllerPolicy::default(), ControllerPolicy::TakeOver);
        for bad in ["", "takeover", "Shared", "take-over "] {
            assert!(bad.parse::<ControllerPolicy>().is_err(), "{bad:?}");
        }
    }

    /// Take-over: the newest controller drives; the earlier one watches; an observer never
    /// drives and never takes control from anyone.
    #[test]
    fn take_over_gives_control_to_the_newest_controller() {
        let mut c = Control::new(ControllerPolicy::TakeOver);
        c.join(1, Role::Control);
        assert_eq!(c.state(1, Role::Control), ViewerState::InControl);
        c.join(2, Role::Observe);
        assert_eq!(c.state(1, Role::Control), ViewerState::InControl);
        assert_eq!(c.state(2, Role::Observe), ViewerState::ViewOnly);
        c.join(3, Role::Control);
        assert_eq!(c.state(1, Role::Control), ViewerState::ControlTaken);
        assert_eq!(c.state(3, Role::Control), ViewerState::InControl);
        assert!(!c.state(1, Role::Control).sends_input());
        assert!(c.state(3, Role::Control).sends_input());
        assert!(!c.state(2, Role::Observe).sends_input());
    }

    /// Take-over, fail safe: when the controller in control leaves, the one it took control
    /// from does not get it back by itself; reconnecting (a new join) does.
    #[test]
    fn control_is_not_passed_on_when_its_holder_leaves() {
        let mut c = Control::new(ControllerPolicy::TakeOver);
        c.join(1, Role::Control);
        c.join(2, Role::Control);
        c.leave(1);
        assert_eq!(c.state(2, Role::Control), ViewerState::InControl);
        c.leave(2);
        c.join(3, Role::Control);
        c.join(4, Role::Control);
        c.leave(4);
        assert_eq!(c.state(3, Role::Control), ViewerState::ControlTaken);
        assert!(!c.state(3, Role::Control).sends_input());
        // Viewer 3 reconnects (a new id): in control again.
        c.leave(3);
        c.join(5, Role::Control);
        assert_eq!(c.state(5, Role::Control), ViewerState::InControl);
    }

    #[test]
    fn shared_lets_every_controller_drive_but_no_observer() {
        let mut c = Control::new(ControllerPolicy::Shared);
        c.join(1, Role::Control);
        c.join(2, Role::Control);
        c.join(3, Role::Observe);
        assert_eq!(c.state(1, Role::Control), ViewerState::SharedControl);
        assert_eq!(c.state(2, Role::Control), ViewerState::SharedControl);
        assert_eq!(c.state(3, Role::Observe), ViewerState::ViewOnly);
        assert!(c.state(1, Role::Control).sends_input());
        assert!(!c.state(3, Role::Observe).sends_input());
    }
}
