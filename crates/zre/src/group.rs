//! Group bookkeeping: which remote peers are in which group, and which groups we are in.
//!
//! Two small structures with no protocol logic of their own:
//!
//! * [`PeerGroups`] maps a group name to the peers known to be in it (from their HELLO, JOIN and
//!   LEAVE). SHOUT goes to exactly these peers. Unlike C Zyre, which never deletes a group object,
//!   a group whose last member left disappears, so `peer_groups()` only lists groups that have
//!   members right now.
//! * [`OwnGroups`] is our own membership in join order plus the `status` counter — the `u8`
//!   group-change counter that must be incremented exactly once per real change, because a C
//!   receiver `assert`s on it (docs/zre.md §5.2, §6).

use std::collections::BTreeMap;

use uuid::Uuid;

/// Group name → members (in the order they became known).
#[derive(Debug, Default)]
pub(crate) struct PeerGroups {
    map: BTreeMap<String, Vec<Uuid>>,
}

impl PeerGroups {
    /// Adds `peer` to `group`; returns false if it was already a member.
    pub(crate) fn add(&mut self, group: &str, peer: Uuid) -> bool {
        let members = self.map.entry(group.to_owned()).or_default();
        if members.contains(&peer) {
            false
        } else {
            members.push(peer);
            true
        }
    }

    /// Removes `peer` from `group`; returns false if it was not a member.
    pub(crate) fn remove(&mut self, group: &str, peer: Uuid) -> bool {
        let Some(members) = self.map.get_mut(group) else {
            return false;
        };
        let Some(pos) = members.iter().position(|u| *u == peer) else {
            return false;
        };
        members.remove(pos);
        if members.is_empty() {
            self.map.remove(group);
        }
        true
    }

    /// Removes `peer` from every group in `groups` (silently: no LEAVE events, as in Zyre).
    pub(crate) fn remove_peer(&mut self, peer: Uuid, groups: &[String]) {
        for g in groups {
            self.remove(g, peer);
        }
    }

    /// Members of `group` (empty if unknown).
    pub(crate) fn members(&self, group: &str) -> &[Uuid] {
        self.map.get(group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Names of the groups that currently have at least one member, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}

/// Our own groups (join order) and our status counter.
#[derive(Debug, Default)]
pub(crate) struct OwnGroups {
    list: Vec<String>,
    status: u8,
}

impl OwnGroups {
    /// Joins `group`. Returns the new status if membership changed, `None` if already joined.
    pub(crate) fn join(&mut self, group: &str) -> Option<u8> {
        if self.contains(group) {
            return None;
        }
        self.list.push(group.to_owned());
        self.status = self.status.wrapping_add(1);
        Some(self.status)
    }

    /// Leaves `group`. Returns the new status if membership changed, `None` if not a member.
    pub(crate) fn leave(&mut self, group: &str) -> Option<u8> {
        let pos = self.list.iter().position(|g| g == group)?;
        self.list.remove(pos);
        self.status = self.status.wrapping_add(1);
        Some(self.status)
    }

    /// True if we are in `group`.
    pub(crate) fn contains(&self, group: &str) -> bool {
        self.list.iter().any(|g| g == group)
    }

    /// Our groups in join order.
    pub(crate) fn list(&self) -> &[String] {
        &self.list
    }

    /// Current status counter (as carried in HELLO).
    pub(crate) fn status(&self) -> u8 {
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_groups_add_remove() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut g = PeerGroups::default();
        assert!(g.add("X", a));
        assert!(!g.add("X", a));
        assert!(g.add("X", b));
        assert!(g.add("Y", a));
        assert_eq!(g.members("X"), &[a, b]);
        assert_eq!(g.names(), vec!["X".to_string(), "Y".to_string()]);
        assert!(g.remove("X", a));
        assert!(!g.remove("X", a));
        assert!(!g.remove("Z", a));
        g.remove_peer(a, &["Y".to_string()]);
        assert_eq!(g.names(), vec!["X".to_string()]);
        assert!(g.members("Y").is_empty());
        g.clear();
        assert!(g.names().is_empty());
    }

    #[test]
    fn own_groups_status_changes_only_on_real_change() {
        let mut o = OwnGroups::default();
        assert_eq!(o.join("A"), Some(1));
        assert_eq!(o.join("A"), None);
        assert_eq!(o.join("B"), Some(2));
        assert_eq!(o.leave("C"), None);
        assert_eq!(o.leave("A"), Some(3));
        assert_eq!(o.list(), &["B".to_string()]);
        assert_eq!(o.status(), 3);
        for _ in 0..300 {
            o.join("Z");
            o.leave("Z");
        }
        assert_eq!(o.status(), 3u8.wrapping_add(600u16 as u8));
    }
}
