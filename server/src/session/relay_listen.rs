//! A listening connection (`Listen`): offers and presence are pushed to it from its queue in
//! the relay hub, and its client's answers, verdicts and cancels go back to each offer's
//! sender. Nothing else is asked on it afterwards.

use std::collections::{HashMap, HashSet};

use ft_protocol::{
    relay::{
        Answer, CancelOffer, Decision, Listen, Listening, OfferCancelled, OnlineUser, Received,
    },
    ErrorCode, ErrorResponse, Request, Response, MAX_OFFER_FILES,
};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Session, SessionError};
use crate::relay::{Control, Push, LISTENER_QUEUE_MESSAGES, MAX_BLOCKED_USERS};

/// Longest a listening client may be silent (it sends a keepalive every 20 s).
const LISTENER_SILENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a listening connection checks that its user still exists with its token (it
/// may wait long between messages; a removed user must not stay reachable).
const LISTENER_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// An offer this listener was shown.
struct Shown {
    /// Where its answers go.
    control: mpsc::UnboundedSender<Control>,
    /// Files offered.
    files: usize,
    /// Whether it was answered (the first answer counts).
    answered: bool,
    /// Files started and not yet given a verdict.
    pending: HashSet<u32>,
}

impl Session {
    /// Serves a listening connection until its client leaves, breaks the grammar, or the
    /// server shuts down.
    pub(super) async fn on_listen(&mut self, listen: Listen) -> Result<(), SessionError> {
        let user = self.user().to_owned();
        if user == crate::auth::ANONYMOUS {
            let message = "anonymous clients cannot listen: log in as a user";
            let failed = ErrorResponse::new(None, ErrorCode::Forbidden, message);
            self.send(Response::Error(failed)).await?;
            return Err(SessionError::Violation(message.to_owned()));
        }
        if listen.blocked.len() > MAX_BLOCKED_USERS {
            let what = format!("more than {MAX_BLOCKED_USERS} blocked users");
            return Err(self.violation(&what).await);
        }
        let (queue, mut pushed) = mpsc::channel(LISTENER_QUEUE_MESSAGES);
        let hub = &self.state.relay;
        let Some(id) = hub.add_listener(&user, queue.clone(), listen.blocked.clone()) else {
            let message = format!(
                "user '{user}' listens on {} connections already",
                crate::relay::MAX_LISTENERS_PER_USER
            );
            let busy = ErrorResponse::new(None, ErrorCode::Busy, &message);
            self.send(Response::Error(busy)).await?;
            return Err(SessionError::Violation(message));
        };
        tracing::info!("listening for offers");
        let result = async {
            let users = self.online_users().await?;
            self.send(Response::Listening(Listening { users })).await?;
            // What others left while the user was away comes first, beside live offers. It
            // ends by itself once this connection has ended (its queue closes), after acting
            // on the verdicts the listener gave.
            tokio::spawn(crate::relay::inbox::delivery::deliver_waiting(
                std::sync::Arc::clone(&self.state),
                user.clone(),
                listen.blocked,
                queue,
            ));
            let mut shown: HashMap<u64, Shown> = HashMap::new();
            let served = self.serve_listener(&mut pushed, &mut shown).await;
            for (offer, shown) in shown {
                let message = "the recipient's connection ended".to_owned();
                let _ = shown.control.send(Control::Gone {
                    user: user.clone(),
                    message,
                });
                tracing::debug!(offer, "offer left behind by a closing listener");
            }
            served
        }
        .await;
        self.state.relay.remove_listener(&user, id);
        result
    }

    async fn serve_listener(
        &mut self,
        pushed: &mut mpsc::Receiver<Push>,
        shown: &mut HashMap<u64, Shown>,
    ) -> Result<(), SessionError> {
        // Clients say something every 20 s; a listener waiting on a slow offer is not idle.
        let idle_timeout = self.state.limits.idle_timeout.max(LISTENER_SILENCE);
        let shutdown = self.shutdown.clone();
        let mut recheck = tokio::time::interval_at(
            tokio::time::Instant::now() + LISTENER_RECHECK,
            LISTENER_RECHECK,
        );
        // While no offer is shown, a listener only waits: a full server may close it for a
        // new client, like any idle session (see idle.rs).
        let mut idle: Option<crate::idle::IdleMark> = None;
        loop {
            if shown.is_empty() {
                idle.get_or_insert_with(|| self.state.idle.mark(crate::idle::Stage::Session));
            } else {
                idle = None;
            }
            let evicted = idle.as_ref().map(crate::idle::IdleMark::evicted);
            // The client says something at least every idle timeout (a `Users` keepalive).
            let woke = tokio::select! {
                push = pushed.recv() => ListenerWoke::Pushed(push),
                _ = recheck.tick() => ListenerWoke::Recheck,
                () = super::cancelled(evicted) => ListenerWoke::Evicted,
                next = tokio::time::timeout(idle_timeout, self.reader.next()) => {
                    ListenerWoke::Request(next)
                }
                () = shutdown.cancelled() => ListenerWoke::ShuttingDown,
            };
            match woke {
                ListenerWoke::Pushed(None) => return Ok(()),
                ListenerWoke::Pushed(Some(Push::Offer { offered, control })) => {
                    // Not shown to a user removed meanwhile: the session ends here, and the
                    // sender hears that this recipient's connection ended.
                    if let Err(err) = self.signed_in_role(false).await {
                        let message = "the recipient's connection ended".to_owned();
                        let user = self.user().to_owned();
                        let _ = control.send(Control::Gone { user, message });
                        return Err(err);
                    }
                    shown.insert(
                        offered.offer,
                        Shown {
                            control,
                            files: offered.files.len(),
                            answered: false,
                            pending: HashSet::new(),
                        },
                    );
                    self.send(Response::Offered(offered)).await?;
                }
                ListenerWoke::Pushed(Some(Push::Send(response))) => {
                    match &response {
                        Response::RelayFileStart(start) => {
                            if let Some(offer) = shown.get_mut(&start.offer) {
                                offer.pending.insert(start.file);
                            }
                        }
                        Response::OfferCancelled(OfferCancelled { offer, .. })
                        | Response::OfferClosed(ft_protocol::relay::OfferClosed { offer }) => {
                            shown.remove(offer);
                        }
                        _ => {}
                    }
                    // Written out once the queue is drained: data comes in runs, and one
                    // flush per run, not per piece, keeps TLS records large.
                    self.queue(response).await?;
                    if pushed.is_empty() {
                        self.send_queued().await?;
                    }
                }
                ListenerWoke::Recheck => {
                    self.signed_in_role(false).await?;
                }
                ListenerWoke::Evicted => {
                    tracing::info!("idle listening connection closed: the server is full");
                    let message = "the server is full and this listening connection was idle; \
                                   listen again later";
                    let busy = ErrorResponse::new(None, ErrorCode::Busy, message);
                    let _ = self.send(Response::Error(busy)).await;
                    return Ok(());
                }
                ListenerWoke::ShuttingDown => {
                    let bye = ErrorResponse::new(
                        None,
                        ErrorCode::ShuttingDown,
                        "server is shutting down",
                    );
                    let _ = self.send(Response::Error(bye)).await;
                    return Ok(());
                }
                ListenerWoke::Request(Err(_)) => {
                    return Err(self
                        .refuse(ErrorCode::Timeout, SessionError::Timeout(idle_timeout))
                        .await)
                }
                ListenerWoke::Request(Ok(next)) => {
                    let Some(request) = self.received(next).await? else {
                        return Ok(());
                    };
                    self.on_listener_request(request, shown).await?;
                }
            }
        }
    }

    /// `Users`: who is online, for users who signed in (an anonymous client may not learn
    /// who uses the server). Users removed since their connections opened are left out.
    pub(super) async fn on_users(&mut self) -> Result<(), SessionError> {
        self.signed_in_role(false).await?;
        if self.user() == crate::auth::ANONYMOUS {
            let message = "anonymous clients cannot see who is online: log in as a user";
            let refused = ErrorResponse::new(None, ErrorCode::Forbidden, message);
            return self.send(Response::Error(refused)).await;
        }
        let users = self.online_users().await?;
        self.send(Response::Users(ft_protocol::relay::UserList { users }))
            .await
    }

    /// The users online now who still exist.
    async fn online_users(&mut self) -> Result<Vec<OnlineUser>, SessionError> {
        let mut users = self.state.relay.online_users();
        let kept = self
            .state
            .security
            .auth
            .keep_current(&mut users, |user| user.name.as_str());
        match kept {
            Ok(()) => Ok(users),
            Err(failure) => {
                let message = failure.to_string();
                let failed = ErrorResponse::new(None, ErrorCode::Internal, message);
                let _ = self.send(Response::Error(failed)).await;
                Err(SessionError::Unauthorized(failure))
            }
        }
    }

    /// One message from a listening client.
    async fn on_listener_request(
        &mut self,
        request: Request,
        shown: &mut HashMap<u64, Shown>,
    ) -> Result<(), SessionError> {
        let user = self.user().to_owned();
        // A listener removed or given a new token is let go at its next message (or at the
        // next offer, see `serve_listener`), not only when it reconnects.
        let cheap = matches!(request, Request::Received(_));
        self.signed_in_role(cheap).await?;
        match request {
            Request::Users(_) => self.on_users().await?,
            Request::Answer(Answer { offer, decision }) => {
                let Some(shown_offer) = shown.get_mut(&offer) else {
                    // Cancelled meanwhile, or never shown: nothing to answer.
                    return Ok(());
                };
                if shown_offer.answered {
                    return Err(self.violation("an offer answered twice").await);
                }
                if let Decision::Accept(files) = &decision {
                    if files.len() != shown_offer.files || files.len() > MAX_OFFER_FILES {
                        return Err(self
                            .violation("an answer for another number of files")
                            .await);
                    }
                }
                shown_offer.answered = true;
                let declined = matches!(decision, Decision::Decline);
                let _ = shown_offer.control.send(Control::Answer {
                    user: user.clone(),
                    decision,
                });
                if declined {
                    shown.remove(&offer);
                }
            }
            Request::Received(Received {
                offer,
                file,
                ok,
                message,
            }) => {
                let Some(shown_offer) = shown.get_mut(&offer) else {
                    return Ok(());
                };
                if !shown_offer.pending.remove(&file) {
                    return Err(self.violation("a verdict on a file not sent").await);
                }
                let message: String = message.chars().take(512).collect();
                let _ = shown_offer.control.send(Control::Received {
                    user: user.clone(),
                    file,
                    ok,
                    message,
                });
            }
            Request::CancelOffer(CancelOffer { offer }) => {
                if let Some(shown_offer) = shown.remove(&offer) {
                    let message = format!("{user} cancelled");
                    let _ = shown_offer.control.send(Control::Gone {
                        user: user.clone(),
                        message,
                    });
                }
            }
            _ => {
                return Err(self
                    .violation("a listening connection only answers offers")
                    .await)
            }
        }
        Ok(())
    }
}

/// What woke a listening connection.
enum ListenerWoke {
    /// Something to push to the client (`None`: the hub let go of the queue).
    Pushed(Option<Push>),
    /// The client said something, or was silent past the idle timeout.
    Request(
        Result<Option<Result<Request, ft_protocol::ProtocolError>>, tokio::time::error::Elapsed>,
    ),
    /// Time to check that the user still exists with its token.
    Recheck,
    /// The server is full and took this idle listener's slot for a new client.
    Evicted,
    /// The server is shutting down.
    ShuttingDown,
}
