//! Who is online: every authenticated connection counts its user in, for as long as it is
//! open; listening connections are marked as such.

use std::time::SystemTime;

use ft_protocol::relay::{OnlineUser, Presence};

use super::{HubState, RelayHub};

/// A user's open connections.
#[derive(Debug, Clone, Copy)]
pub(super) struct Online {
    connections: usize,
    since: SystemTime,
}

/// Keeps its user counted online until dropped.
#[derive(Debug)]
pub(crate) struct OnlineGuard {
    hub: std::sync::Arc<crate::ServerState>,
    user: String,
}

impl Drop for OnlineGuard {
    fn drop(&mut self) {
        self.hub.relay.went_offline(&self.user);
    }
}

impl RelayHub {
    /// Counts a connection of `user` as online until the guard is dropped.
    pub(crate) fn came_online(
        state: &std::sync::Arc<crate::ServerState>,
        user: &str,
    ) -> OnlineGuard {
        let hub = &state.relay;
        let first = {
            let mut hub_state = hub.state();
            let entry = hub_state.online.entry(user.to_owned()).or_insert(Online {
                connections: 0,
                since: SystemTime::now(),
            });
            entry.connections += 1;
            entry.connections == 1
        };
        if first {
            hub.announce(user);
        }
        OnlineGuard {
            hub: std::sync::Arc::clone(state),
            user: user.to_owned(),
        }
    }

    fn went_offline(&self, user: &str) {
        let last = {
            let mut state = self.state();
            match state.online.get_mut(user) {
                Some(entry) if entry.connections > 1 => {
                    entry.connections -= 1;
                    false
                }
                Some(_) => {
                    state.online.remove(user);
                    true
                }
                None => false,
            }
        };
        if last {
            self.announce(user);
        }
    }

    /// Everyone online now, sorted by name.
    pub(crate) fn online_users(&self) -> Vec<OnlineUser> {
        let state = self.state();
        let mut users: Vec<OnlineUser> = state
            .online
            .keys()
            .map(|user| of(&state, user).user)
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }
}

/// What listeners are told about `user` now.
pub(super) fn of(state: &HubState, user: &str) -> Presence {
    let online = state.online.get(user);
    let since = online.map_or(SystemTime::now(), |entry| entry.since);
    Presence {
        user: OnlineUser {
            name: user.to_owned(),
            since: humantime::format_rfc3339_seconds(since).to_string(),
            listening: state
                .listeners
                .get(user)
                .is_some_and(|slots| !slots.is_empty()),
        },
        online: online.is_some(),
    }
}
