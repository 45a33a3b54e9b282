//! A sender's offer (`Offer`): find the recipients' listening connections, gather their
//! answers, then fan the sender's stream out to those who accepted, each from its own start,
//! and pass their verdicts back. The sender's bytes are read once and never touch the disk;
//! each recipient's queue is bounded, so the slowest sets the pace, and one that stays
//! stuck past the idle timeout is dropped without hurting the others.

use std::collections::HashSet;

use bytes::Bytes;
use ft_protocol::{
    relay::{
        Decision, Delivered, FileAnswer, Offer, OfferAnswers, OfferCancelled, OfferClosed, Offered,
        RecipientAnswer, RecipientOutcome, RelayBegin, RelayData, RelayFileEnd, RelayFileStart,
    },
    ErrorCode, Failed, Request, Response, CHUNK_SIZE, MAX_OFFER_FILES, MAX_OFFER_TIMEOUT_SECS,
    MAX_RELAY_RECIPIENTS,
};
use futures::StreamExt;
use tokio::{sync::mpsc, time::Instant};

use super::{Session, SessionError};
use crate::{
    auth::roles::Action,
    names::ValidName,
    relay::{Control, Push, Unreachable},
};

/// One recipient of an offer, as the sender's session tracks it.
struct Recipient {
    user: String,
    /// Its listening connection's queue, while it takes part.
    queue: Option<mpsc::Sender<Push>>,
    /// What it answered, per file (empty until it accepted).
    answers: Vec<FileAnswer>,
    /// Where its copy of the file being sent starts, if it gets that file.
    start: Option<u64>,
    /// Files sent to it whose verdict has not come.
    awaiting: HashSet<u32>,
}

/// The file being streamed.
struct Streaming {
    file: u32,
    size: u64,
    /// Position in the file of the next byte the sender sends.
    position: u64,
}

impl Session {
    /// Runs one offer from `Offer` to `OfferClosed`.
    pub(super) async fn on_offer(&mut self, offer: Offer) -> Result<(), SessionError> {
        self.run_offer(offer, Route::Live).await
    }

    /// Runs one `Leave` (files for users' inboxes) from `Leave` to `OfferClosed`: the same
    /// stream as an offer, with each recipient's inbox writer in place of its listener.
    pub(super) async fn on_leave(&mut self, offer: Offer) -> Result<(), SessionError> {
        self.run_offer(offer, Route::Inbox).await
    }

    async fn run_offer(&mut self, offer: Offer, route: Route) -> Result<(), SessionError> {
        let sender = self.user().to_owned();
        if let Some(refusal) = self.check_offer(&offer, &sender).await? {
            return self.send(Response::Failed(refusal)).await;
        }
        let id = self.state.relay.next_id();
        let batch = crate::relay::inbox::now_ns();
        let (control_tx, mut control) = mpsc::unbounded_channel();
        let mut recipients = Vec::with_capacity(offer.to.len());
        let mut outcomes: Vec<Option<RecipientOutcome>> = Vec::with_capacity(offer.to.len());
        for user in &offer.to {
            let mut recipient = Recipient {
                user: user.clone(),
                queue: None,
                answers: Vec::new(),
                start: None,
                awaiting: HashSet::new(),
            };
            let outcome = match route {
                Route::Live => {
                    let offered = Offered {
                        offer: id,
                        from: sender.clone(),
                        files: offer.files.clone(),
                    };
                    let (queue, outcome) = self.reach_listener(user, offered, &control_tx);
                    recipient.queue = queue;
                    outcome
                }
                Route::Inbox => {
                    let leaving = crate::relay::inbox::writer::Leaving {
                        sender: sender.clone(),
                        recipient: user.clone(),
                        files: offer.files.clone(),
                        batch,
                        resumable: Vec::new(),
                    };
                    let (queue, outcome) = self.reach_inbox(leaving, &control_tx).await;
                    if let RecipientOutcome::Accepted(files) = &outcome {
                        recipient.answers = files.clone();
                    }
                    recipient.queue = queue;
                    Some(outcome)
                }
            };
            recipients.push(recipient);
            outcomes.push(outcome);
        }
        drop(control_tx);
        tracing::info!(offer = id, to = ?offer.to, files = offer.files.len(), ?route, "offer made");
        let timeout = std::time::Duration::from_secs(u64::from(
            offer.timeout_secs.clamp(1, MAX_OFFER_TIMEOUT_SECS),
        ));
        let deadline = Instant::now() + timeout;
        if !self
            .gather_answers(&mut recipients, &mut outcomes, &mut control, deadline)
            .await?
        {
            cancel_for_recipients(id, &mut recipients, &sender, "the sender cancelled");
            return self
                .send(Response::OfferClosed(OfferClosed { offer: id }))
                .await;
        }
        let answers = recipients
            .iter()
            .zip(&outcomes)
            .map(|(recipient, outcome)| RecipientAnswer {
                user: recipient.user.clone(),
                outcome: outcome.clone().unwrap_or(RecipientOutcome::TimedOut),
            })
            .collect();
        for (recipient, outcome) in recipients.iter_mut().zip(&outcomes) {
            if !matches!(outcome, Some(RecipientOutcome::Accepted(_))) {
                if outcome.is_none() {
                    // Too late now: tell its connection the offer is gone.
                    if let Some(queue) = recipient.queue.take() {
                        let _ = queue.try_send(Push::Send(cancelled(
                            id,
                            &sender,
                            ErrorCode::Timeout,
                            "the offer timed out",
                        )));
                    }
                }
                recipient.queue = None;
            }
        }
        self.send(Response::OfferAnswers(OfferAnswers {
            offer: id,
            recipients: answers,
        }))
        .await?;
        let result = self
            .stream_offer(id, &offer, &mut recipients, &mut control)
            .await;
        if result.is_err() {
            cancel_for_recipients(id, &mut recipients, &sender, "the sender left");
        }
        result
    }

    /// Pushes an offer to `user`'s newest listening connection. The queue, while it takes
    /// part, and the outcome if it is known already (not online, blocked).
    fn reach_listener(
        &self,
        user: &str,
        offered: Offered,
        control: &mpsc::UnboundedSender<Control>,
    ) -> (Option<mpsc::Sender<Push>>, Option<RecipientOutcome>) {
        // The users were read again by the offer's check: a removed user is not reached
        // through a connection it still holds.
        if !self.state.security.auth.is_user(user) {
            return (None, Some(RecipientOutcome::NotOnline));
        }
        match self.state.relay.listener_for(user, &offered.from) {
            Err(Unreachable::NotOnline) => (None, Some(RecipientOutcome::NotOnline)),
            Err(Unreachable::Blocked) => (None, Some(RecipientOutcome::Declined)),
            Ok(slot) => {
                let push = Push::Offer {
                    offered,
                    control: control.clone(),
                };
                // A listener whose queue is full is busy receiving another offer.
                match slot.queue.try_send(push) {
                    Ok(()) => (Some(slot.queue), None),
                    Err(_) => (None, Some(RecipientOutcome::NotOnline)),
                }
            }
        }
    }

    /// Refuses an offer that breaks a rule (then the session goes on), or a role that may
    /// not offer.
    async fn check_offer(
        &mut self,
        offer: &Offer,
        sender: &str,
    ) -> Result<Option<Failed>, SessionError> {
        let refuse = |code, message: String| Ok(Some(Failed { code, message }));
        if sender == crate::auth::ANONYMOUS {
            return refuse(
                ErrorCode::Forbidden,
                "anonymous clients cannot send to users: log in".into(),
            );
        }
        if let Err(refusal) = self.authorize(Action::Offer, false).await? {
            return refuse(refusal.code, refusal.message);
        }
        if offer.to.is_empty() || offer.to.len() > MAX_RELAY_RECIPIENTS {
            let message = format!("an offer goes to 1 to {MAX_RELAY_RECIPIENTS} users");
            return refuse(ErrorCode::InvalidName, message);
        }
        let distinct: HashSet<&String> = offer.to.iter().collect();
        if distinct.len() != offer.to.len() {
            return refuse(ErrorCode::InvalidName, "a recipient named twice".into());
        }
        if offer.files.is_empty() || offer.files.len() > MAX_OFFER_FILES {
            let message = format!("an offer holds 1 to {MAX_OFFER_FILES} files");
            return refuse(ErrorCode::InvalidName, message);
        }
        let mut names = HashSet::new();
        for file in &offer.files {
            if let Err(err) = ValidName::parse(&file.name) {
                return refuse(
                    ErrorCode::InvalidName,
                    format!("name {:?} refused: {err}", file.name),
                );
            }
            if !names.insert(file.name.as_str()) {
                return refuse(
                    ErrorCode::InvalidName,
                    format!("{:?} offered twice", file.name),
                );
            }
            if file.size > self.state.limits.max_file_size {
                let message = format!(
                    "{}: {} bytes exceeds the server's limit of {} bytes",
                    file.name, file.size, self.state.limits.max_file_size
                );
                return refuse(ErrorCode::TooLarge, message);
            }
        }
        if !self.state.relay.may_offer(sender) {
            let message = format!(
                "more than {} offers in a minute; wait a little",
                crate::relay::OFFERS_PER_MINUTE
            );
            return refuse(ErrorCode::Busy, message);
        }
        Ok(None)
    }

    /// Waits until every reachable recipient answered or the deadline passed. False: the
    /// sender cancelled or left meanwhile.
    async fn gather_answers(
        &mut self,
        recipients: &mut [Recipient],
        outcomes: &mut [Option<RecipientOutcome>],
        control: &mut mpsc::UnboundedReceiver<Control>,
        deadline: Instant,
    ) -> Result<bool, SessionError> {
        while outcomes.iter().any(Option::is_none) {
            let woke = tokio::select! {
                message = control.recv() => OfferWoke::Control(message),
                next = self.reader.next() => OfferWoke::Request(next),
                () = tokio::time::sleep_until(deadline) => return Ok(true),
            };
            match woke {
                OfferWoke::Control(None) => return Ok(true),
                OfferWoke::Control(Some(message)) => {
                    let Some(at) = position(recipients, control_user(&message)) else {
                        continue;
                    };
                    if outcomes[at].is_some() {
                        continue;
                    }
                    outcomes[at] = Some(match message {
                        Control::Answer {
                            decision: Decision::Accept(files),
                            ..
                        } => {
                            recipients[at].answers = files.clone();
                            RecipientOutcome::Accepted(files)
                        }
                        Control::Answer { .. } | Control::Gone { .. } => {
                            recipients[at].queue = None;
                            RecipientOutcome::Declined
                        }
                        Control::Received { .. } => continue,
                    });
                }
                OfferWoke::Request(next) => match self.received(next).await? {
                    None => return Ok(false),
                    Some(Request::CancelOffer(_) | Request::OfferEnd(_)) => return Ok(false),
                    Some(_) => {
                        let what = "only CancelOffer while an offer waits for its answers";
                        return Err(self.violation(what).await);
                    }
                },
            }
        }
        Ok(true)
    }

    /// Streams the offer's files to the recipients who accepted them until `OfferEnd`, then
    /// waits for their last verdicts and closes the offer.
    async fn stream_offer(
        &mut self,
        id: u64,
        offer: &Offer,
        recipients: &mut [Recipient],
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Result<(), SessionError> {
        let sender = self.user().to_owned();
        let idle_timeout = self.state.limits.idle_timeout;
        let mut streaming: Option<Streaming> = None;
        let mut begun = HashSet::new();
        loop {
            let woke = tokio::select! {
                biased;
                message = control.recv() => OfferWoke::Control(message),
                next = tokio::time::timeout(idle_timeout, self.reader.next()) => match next {
                    Ok(next) => OfferWoke::Request(next),
                    Err(_) => return Err(self
                        .refuse(ErrorCode::Timeout, SessionError::Timeout(idle_timeout))
                        .await),
                },
            };
            let request = match woke {
                OfferWoke::Control(Some(message)) => {
                    self.on_offer_control(id, recipients, message).await?;
                    continue;
                }
                // Every recipient connection let go; the sender still ends the offer.
                OfferWoke::Control(None) => {
                    let next = tokio::time::timeout(idle_timeout, self.reader.next()).await;
                    match next {
                        Ok(next) => self.received(next).await?,
                        Err(_) => return Err(SessionError::Timeout(idle_timeout)),
                    }
                }
                OfferWoke::Request(next) => self.received(next).await?,
            };
            let Some(request) = request else {
                return Err(SessionError::Violation(
                    "the sender left in the middle of its offer".into(),
                ));
            };
            match request {
                Request::RelayBegin(begin) => {
                    if streaming.is_some() {
                        return Err(self
                            .violation("RelayBegin before the last file ended")
                            .await);
                    }
                    let Some(file) = offer.files.get(begin.file as usize) else {
                        return Err(self.violation("RelayBegin of a file not offered").await);
                    };
                    if !begun.insert(begin.file) {
                        return Err(self.violation("a file of the offer sent twice").await);
                    }
                    if !valid_starts(&begin, file.size, recipients) {
                        return Err(self.violation("RelayBegin with impossible starts").await);
                    }
                    streaming = Some(Streaming {
                        file: begin.file,
                        size: file.size,
                        position: begin.start,
                    });
                    for (recipient, start) in recipients.iter_mut().zip(&begin.starts) {
                        recipient.start = *start;
                        if let Some(offset) = start {
                            let message = Response::RelayFileStart(RelayFileStart {
                                offer: id,
                                file: begin.file,
                                offset: *offset,
                            });
                            if deliver(recipient, message, idle_timeout).await {
                                recipient.awaiting.insert(begin.file);
                            } else {
                                self.drop_recipient(id, recipient, "stopped reading")
                                    .await?;
                            }
                        }
                    }
                }
                Request::RelayData(data) => {
                    let Some(current) = streaming.as_mut() else {
                        return Err(self.violation("RelayData outside a file").await);
                    };
                    let len = data.data.len() as u64;
                    if data.data.is_empty() {
                        // It would keep the offer (and its recipients' writers) alive
                        // forever without moving a byte.
                        return Err(self.violation("an empty RelayData").await);
                    }
                    if data.data.len() > CHUNK_SIZE || current.position + len > current.size {
                        return Err(self
                            .violation("RelayData beyond the file or too large")
                            .await);
                    }
                    let at = current.position;
                    current.position += len;
                    for recipient in recipients.iter_mut() {
                        let Some(slice) = slice_for(recipient.start, at, &data.data) else {
                            continue;
                        };
                        let message = Response::RelayData(RelayData {
                            offer: id,
                            data: slice,
                        });
                        if !deliver(recipient, message, idle_timeout).await {
                            self.drop_recipient(id, recipient, "stopped reading")
                                .await?;
                        }
                    }
                }
                Request::RelayEnd(end) => {
                    let Some(current) = streaming.take() else {
                        return Err(self.violation("RelayEnd outside a file").await);
                    };
                    if current.position != current.size || end.file != current.file {
                        return Err(self.violation("RelayEnd before the file's last byte").await);
                    }
                    for recipient in recipients.iter_mut() {
                        if recipient.start.take().is_none() {
                            continue;
                        }
                        let message = Response::RelayFileEnd(RelayFileEnd {
                            offer: id,
                            file: current.file,
                            hash: end.hash,
                        });
                        if !deliver(recipient, message, idle_timeout).await {
                            self.drop_recipient(id, recipient, "stopped reading")
                                .await?;
                        }
                    }
                }
                Request::CancelOffer(_) => {
                    cancel_for_recipients(id, recipients, &sender, "the sender cancelled");
                    return self
                        .send(Response::OfferClosed(OfferClosed { offer: id }))
                        .await;
                }
                Request::OfferEnd(_) => {
                    if streaming.is_some() {
                        cancel_for_recipients(
                            id,
                            recipients,
                            &sender,
                            "the sender stopped mid-file",
                        );
                        return self
                            .send(Response::OfferClosed(OfferClosed { offer: id }))
                            .await;
                    }
                    self.await_verdicts(id, recipients, control).await?;
                    for recipient in recipients.iter_mut() {
                        if let Some(queue) = recipient.queue.take() {
                            let closed = Response::OfferClosed(OfferClosed { offer: id });
                            let _ = queue.try_send(Push::Send(closed));
                        }
                    }
                    tracing::info!(offer = id, "offer closed");
                    return self
                        .send(Response::OfferClosed(OfferClosed { offer: id }))
                        .await;
                }
                _ => {
                    return Err(self
                        .violation("only relay messages in the middle of an offer")
                        .await)
                }
            }
        }
    }

    /// After the last file: the recipients' remaining verdicts, for at most the idle
    /// timeout (a recipient that never answers is dropped).
    async fn await_verdicts(
        &mut self,
        id: u64,
        recipients: &mut [Recipient],
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Result<(), SessionError> {
        let deadline = Instant::now() + self.state.limits.idle_timeout;
        while recipients
            .iter()
            .any(|r| r.queue.is_some() && !r.awaiting.is_empty())
        {
            let message = tokio::select! {
                message = control.recv() => message,
                () = tokio::time::sleep_until(deadline) => None,
            };
            match message {
                Some(message) => self.on_offer_control(id, recipients, message).await?,
                None => {
                    for recipient in recipients.iter_mut() {
                        if recipient.queue.is_some() && !recipient.awaiting.is_empty() {
                            self.drop_recipient(id, recipient, "gave no verdict in time")
                                .await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A verdict or a departure from a recipient, passed on to the sender.
    async fn on_offer_control(
        &mut self,
        id: u64,
        recipients: &mut [Recipient],
        message: Control,
    ) -> Result<(), SessionError> {
        let Some(at) = position(recipients, control_user(&message)) else {
            return Ok(());
        };
        let recipient = &mut recipients[at];
        match message {
            Control::Received {
                user,
                file,
                ok,
                message,
            } => {
                if recipient.awaiting.remove(&file) {
                    tracing::info!(offer = id, to = %user, file, ok, "relayed file delivered");
                    self.send(Response::Delivered(Delivered {
                        offer: id,
                        user,
                        file,
                        ok,
                        message,
                    }))
                    .await?;
                }
            }
            Control::Gone { user, message } => {
                if recipient.queue.take().is_some() {
                    recipient.start = None;
                    recipient.awaiting.clear();
                    self.send(cancelled(id, &user, ErrorCode::Cancelled, &message))
                        .await?;
                }
            }
            Control::Answer { .. } => {}
        }
        Ok(())
    }

    /// Stops sending to a recipient that cannot keep up, and tells the sender.
    async fn drop_recipient(
        &mut self,
        id: u64,
        recipient: &mut Recipient,
        why: &str,
    ) -> Result<(), SessionError> {
        if let Some(queue) = recipient.queue.take() {
            let message = format!("{} {why}; dropped", recipient.user);
            tracing::warn!(offer = id, to = %recipient.user, "recipient dropped: {why}");
            let _ = queue.try_send(Push::Send(cancelled(
                id,
                &recipient.user,
                ErrorCode::Timeout,
                &message,
            )));
            recipient.start = None;
            recipient.awaiting.clear();
            return self
                .send(cancelled(id, &recipient.user, ErrorCode::Timeout, &message))
                .await;
        }
        Ok(())
    }
}

/// Tells every recipient still taking part that the offer is over.
fn cancel_for_recipients(id: u64, recipients: &mut [Recipient], sender: &str, why: &str) {
    for recipient in recipients.iter_mut() {
        if let Some(queue) = recipient.queue.take() {
            let message = cancelled(id, sender, ErrorCode::Cancelled, why);
            let _ = queue.try_send(Push::Send(message));
        }
    }
}

/// Queues `message` for `recipient`, waiting at most `timeout` for room. False: it did not
/// take the message in time (or its connection is gone).
async fn deliver(
    recipient: &mut Recipient,
    message: Response,
    timeout: std::time::Duration,
) -> bool {
    let Some(queue) = &recipient.queue else {
        return true;
    };
    queue
        .send_timeout(Push::Send(message), timeout)
        .await
        .is_ok()
}

/// The part of `data` (which starts at `at` in the file) a recipient whose copy starts at
/// `start` still needs; `None` if it needs none of it.
fn slice_for(start: Option<u64>, at: u64, data: &Bytes) -> Option<Bytes> {
    let start = start?;
    let end = at + data.len() as u64;
    if end <= start || data.is_empty() {
        return None;
    }
    let skip = usize::try_from(start.saturating_sub(at)).ok()?;
    Some(data.slice(skip..))
}

/// Whether a `RelayBegin`'s starts are possible: one per recipient, only for those who
/// accepted that file and still take part, each at or after the stream's start and within
/// the file.
fn valid_starts(begin: &RelayBegin, size: u64, recipients: &[Recipient]) -> bool {
    begin.start <= size
        && begin.starts.len() == recipients.len()
        && begin
            .starts
            .iter()
            .zip(recipients)
            .all(|(start, recipient)| match start {
                None => true,
                Some(offset) => {
                    let accepted = matches!(
                        recipient.answers.get(begin.file as usize),
                        Some(FileAnswer::Accept { .. })
                    );
                    (accepted || recipient.queue.is_none())
                        && *offset >= begin.start
                        && *offset <= size
                }
            })
}

fn control_user(message: &Control) -> &str {
    match message {
        Control::Answer { user, .. }
        | Control::Received { user, .. }
        | Control::Gone { user, .. } => user,
    }
}

fn position(recipients: &[Recipient], user: &str) -> Option<usize> {
    recipients.iter().position(|r| r.user == user)
}

/// An `OfferCancelled` for `offer`.
fn cancelled(offer: u64, user: &str, code: ErrorCode, message: &str) -> Response {
    Response::OfferCancelled(OfferCancelled {
        offer,
        user: user.to_owned(),
        code,
        message: message.to_owned(),
    })
}

/// Where an offer's files go.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// To the recipients' listening connections (`Offer`).
    Live,
    /// Into the recipients' inboxes on the server (`Leave`).
    Inbox,
}

/// What woke an offer's loop.
enum OfferWoke {
    /// A recipient said something (`None`: every recipient's connection let go).
    Control(Option<Control>),
    /// The sender said something.
    Request(Option<Result<Request, ft_protocol::ProtocolError>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipient_gets_the_bytes_from_its_own_start() {
        let data = Bytes::from_static(b"0123456789");
        assert_eq!(slice_for(Some(0), 0, &data).unwrap(), data);
        assert_eq!(slice_for(Some(4), 0, &data).unwrap(), "456789");
        assert_eq!(slice_for(Some(10), 0, &data), None);
        assert_eq!(slice_for(Some(3), 20, &data).unwrap(), data);
        assert_eq!(slice_for(None, 0, &data), None);
    }
}
