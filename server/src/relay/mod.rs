//! Users sending files to other online users: who is online ([`presence`]), and how an
//! offer finds its recipients and their answers come back ([`RelayHub`]). The sessions'
//! side (a listening connection, a sender's offer) is in `session/relay_*.rs`; nothing here
//! touches the disk.

pub(crate) mod inbox;
pub(crate) mod presence;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};

use ft_protocol::{
    relay::{Decision, Offered},
    Response,
};
use tokio::sync::mpsc;

pub(crate) use presence::OnlineGuard;

/// Messages queued for one listening connection. Data moves through it, so it is what
/// holds a fast sender back to its slowest recipient: at most this many messages (each at
/// most `CHUNK_SIZE` of data) wait per listener.
pub(crate) const LISTENER_QUEUE_MESSAGES: usize = 8;

/// Offers one user may make per minute.
pub(crate) const OFFERS_PER_MINUTE: usize = 30;

/// Listening connections one user may hold at once (offers go to the newest; more would only
/// hold connection slots).
pub(crate) const MAX_LISTENERS_PER_USER: usize = 4;

/// Users a listener may block.
pub(crate) const MAX_BLOCKED_USERS: usize = 256;

/// What a sender's offer hears from its recipients' connections.
#[derive(Debug)]
pub(crate) enum Control {
    /// A recipient decided.
    Answer { user: String, decision: Decision },
    /// A recipient's verdict on one file.
    Received {
        user: String,
        file: u32,
        ok: bool,
        message: String,
    },
    /// A recipient stopped the offer, or its connection ended.
    Gone { user: String, message: String },
}

/// What is pushed to a listening connection.
#[derive(Debug)]
pub(crate) enum Push {
    /// A new offer, and where the listener's answers about it go.
    Offer {
        offered: Offered,
        control: mpsc::UnboundedSender<Control>,
    },
    /// Any other message for the client (presence, a file's start, data, end, a cancel).
    Send(Response),
}

/// One listening connection, as the hub reaches it.
#[derive(Debug, Clone)]
pub(crate) struct ListenerSlot {
    /// Which connection (to remove exactly it).
    id: u64,
    /// Its queue.
    pub(crate) queue: mpsc::Sender<Push>,
    /// Users whose offers it declines unseen.
    blocked: Vec<String>,
}

/// Why an offer cannot reach a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// No listening connection.
    NotOnline,
    /// The recipient blocks the sender (told as a decline).
    Blocked,
}

/// The relay's shared state.
#[derive(Debug, Default)]
pub(crate) struct RelayHub {
    state: Mutex<HubState>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct HubState {
    /// Per user: connections open and since when (see presence.rs).
    online: HashMap<String, presence::Online>,
    /// Per user: its listening connections, newest last.
    listeners: HashMap<String, Vec<ListenerSlot>>,
    /// Per user: when its recent offers were made (at most [`OFFERS_PER_MINUTE`]).
    offers_made: HashMap<String, VecDeque<Instant>>,
}

impl RelayHub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        // Every change is a few map operations that leave the state whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new number for an offer or a listener.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a listening connection of `user`; the id removes it again.
    pub(crate) fn add_listener(
        &self,
        user: &str,
        queue: mpsc::Sender<Push>,
        blocked: Vec<String>,
    ) -> Option<u64> {
        let id = self.next_id();
        let slot = ListenerSlot { id, queue, blocked };
        {
            let mut state = self.state();
            let slots = state.listeners.entry(user.to_owned()).or_default();
            if slots.len() >= MAX_LISTENERS_PER_USER {
                return None;
            }
            slots.push(slot);
        }
        self.announce(user);
        Some(id)
    }

    /// Removes listening connection `id` of `user`.
    pub(crate) fn remove_listener(&self, user: &str, id: u64) {
        {
            let mut state = self.state();
            if let Some(slots) = state.listeners.get_mut(user) {
                slots.retain(|slot| slot.id != id);
                if slots.is_empty() {
                    state.listeners.remove(user);
                }
            }
        }
        self.announce(user);
    }

    /// The newest listening connection of `user` that accepts offers from `sender`.
    pub(crate) fn listener_for(
        &self,
        user: &str,
        sender: &str,
    ) -> Result<ListenerSlot, Unreachable> {
        let state = self.state();
        let slot = state
            .listeners
            .get(user)
            .and_then(|slots| slots.iter().rev().find(|slot| !slot.queue.is_closed()))
            .ok_or(Unreachable::NotOnline)?;
        if slot.blocked.iter().any(|blocked| blocked == sender) {
            return Err(Unreachable::Blocked);
        }
        Ok(slot.clone())
    }

    /// Counts an offer by `user`; false when it made [`OFFERS_PER_MINUTE`] in the last
    /// minute already.
    pub(crate) fn may_offer(&self, user: &str) -> bool {
        let mut state = self.state();
        let made = state.offers_made.entry(user.to_owned()).or_default();
        let now = Instant::now();
        while made
            .front()
            .is_some_and(|at| now.duration_since(*at) > Duration::from_secs(60))
        {
            made.pop_front();
        }
        if made.len() >= OFFERS_PER_MINUTE {
            return false;
        }
        made.push_back(now);
        true
    }

    /// Tells every listener (but never waits for one) that `user` changed.
    fn announce(&self, user: &str) {
        let (presence, queues) = {
            let state = self.state();
            let presence = presence::of(&state, user);
            let queues: Vec<mpsc::Sender<Push>> = state
                .listeners
                .values()
                .flatten()
                .map(|slot| slot.queue.clone())
                .collect();
            (presence, queues)
        };
        for queue in queues {
            // A listener whose queue is full is busy receiving; it can ask `Users` later.
            let _ = queue.try_send(Push::Send(Response::Presence(presence.clone())));
        }
    }
}
