//! Helpers for standard `metav1.Condition` lists in `status.conditions`.
//!
//! They follow apimachinery's `meta.SetStatusCondition`: one condition per type, and
//! `lastTransitionTime` changes only when the status does.

use std::fmt;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

impl ConditionStatus {
    /// The wire form: `True`, `False` or `Unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds a condition whose `lastTransitionTime` is `now`.
///
/// `reason` must match the API server's pattern `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`
/// (CamelCase); `message` may be empty and is limited to 32768 bytes.
pub fn new_condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: Time(now),
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Sets `new` in `conditions`, replacing the condition of the same type or appending it.
///
/// When a condition of that type exists with the same status, its `lastTransitionTime` is kept
/// and only `reason`, `message` and `observedGeneration` are updated. Returns whether anything
/// changed, so a caller can skip a status write that would change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == new.type_) else {
        conditions.push(new);
        return true;
    };
    let mut changed = false;
    if existing.status != new.status {
        existing.status = new.status;
        existing.last_transition_time = new.last_transition_time;
        changed = true;
    }
    if existing.reason != new.reason {
        existing.reason = new.reason;
        changed = true;
    }
    if existing.message != new.message {
        existing.message = new.message;
        changed = true;
    }
    if existing.observed_generation != new.observed_generation {
        existing.observed_generation = new.observed_generation;
        changed = true;
    }
    changed
}

/// Removes the condition of type `type_`. Returns whether one was removed.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn appends_new_types() {
        let mut list = Vec::new();
        let c = new_condition(
            "Ready",
            ConditionStatus::False,
            "Pending",
            "",
            Some(1),
            t("2021-01-01T00:00:00Z"),
        );
        assert!(set_condition(&mut list, c.clone()));
        assert_eq!(list, vec![c]);
        let d = new_condition(
            "Degraded",
            false.into(),
            "AsExpected",
            "",
            Some(1),
            t("2021-01-01T00:00:00Z"),
        );
        assert!(set_condition(&mut list, d));
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].type_, "Degraded");
        assert_eq!(list[1].status, "False");
    }

    #[test]
    fn same_status_keeps_transition_time() {
        let mut list = vec![new_condition(
            "Ready",
            ConditionStatus::True,
            "Ready",
            "old",
            Some(1),
            t("2021-01-01T00:00:00Z"),
        )];
        let later = new_condition(
            "Ready",
            ConditionStatus::True,
            "StillReady",
            "new",
            Some(2),
            t("2022-01-01T00:00:00Z"),
        );
        assert!(set_condition(&mut list, later));
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].last_transition_time,
            Time(t("2021-01-01T00:00:00Z"))
        );
        assert_eq!(list[0].reason, "StillReady");
        assert_eq!(list[0].message, "new");
        assert_eq!(list[0].observed_generation, Some(2));
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut list = vec![new_condition(
            "Ready",
            ConditionStatus::True,
            "Ready",
            "",
            None,
            t("2021-01-01T00:00:00Z"),
        )];
        let c = new_condition(
            "Ready",
            ConditionStatus::False,
            "Broken",
            "x",
            None,
            t("2022-01-01T00:00:00Z"),
        );
        assert!(set_condition(&mut list, c.clone()));
        assert_eq!(list, vec![c]);
    }

    #[test]
    fn identical_condition_is_no_change() {
        let c = new_condition(
            "Ready",
            ConditionStatus::True,
            "Ready",
            "m",
            Some(3),
            t("2021-01-01T00:00:00Z"),
        );
        let mut list = vec![c.clone()];
        let mut again = c.clone();
        again.last_transition_time = Time(t("2030-01-01T00:00:00Z"));
        assert!(!set_condition(&mut list, again));
        assert_eq!(list, vec![c]);
    }

    #[test]
    fn find_true_and_remove() {
        let mut list = vec![
            new_condition(
                "Ready",
                ConditionStatus::True,
                "Ready",
                "",
                None,
                Timestamp::UNIX_EPOCH,
            ),
            new_condition(
                "Available",
                ConditionStatus::Unknown,
                "NoKubelet",
                "",
                None,
                Timestamp::UNIX_EPOCH,
            ),
        ];
        assert!(is_condition_true(&list, "Ready"));
        assert!(!is_condition_true(&list, "Available"));
        assert!(!is_condition_true(&list, "Missing"));
        assert_eq!(
            find_condition(&list, "Available").unwrap().status,
            "Unknown"
        );
        assert!(remove_condition(&mut list, "Ready"));
        assert!(!remove_condition(&mut list, "Ready"));
        assert_eq!(list.len(), 1);
        assert_eq!(ConditionStatus::Unknown.to_string(), "Unknown");
    }
}
