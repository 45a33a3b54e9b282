//! The session's side of inboxes: reaching a recipient's inbox for a `Leave` (its writer
//! takes the place of a listener in the offer's fan-out), and `Inbox`, what waits for the
//! asker.

use std::sync::Arc;

use ft_protocol::{
    relay::{InboxList, RecipientOutcome},
    ErrorCode, Failed, Response, MAX_INBOX_LISTED,
};
use tokio::sync::mpsc;

use super::{Session, SessionError};
use crate::relay::{
    inbox::{
        writer::{self, Leaving, Resumable},
        Inboxes,
    },
    Control, Push,
};

impl Session {
    /// Starts a writer into `leaving.recipient`'s inbox if the user exists and its quota has
    /// room for every file; otherwise says why not.
    pub(super) async fn reach_inbox(
        &self,
        mut leaving: Leaving,
        control: &mpsc::UnboundedSender<Control>,
    ) -> (Option<mpsc::Sender<Push>>, RecipientOutcome) {
        let refused = |code, message: String| (None, RecipientOutcome::Refused { code, message });
        if !self.state.security.auth.is_user(&leaving.recipient) {
            let message = format!("there is no user named '{}'", leaving.recipient);
            return refused(ErrorCode::NotFound, message);
        }
        let Some(permit) = self.state.inboxes.try_writer() else {
            let message = "the server is writing as many inboxes as it may at once; \
                           try again shortly"
                .to_owned();
            return refused(ErrorCode::Busy, message);
        };
        let bytes: u64 = leaving.files.iter().map(|file| file.size).sum();
        let state = Arc::clone(&self.state);
        let (sender, recipient) = (leaving.sender.clone(), leaving.recipient.clone());
        let offered = leaving.files.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let resumable = Resumable::claim_all(&state, &sender, &recipient, &offered);
            let resumed = resumable
                .iter()
                .flatten()
                .filter_map(|copy| copy.held.as_ref().map(|(len, _)| *len))
                .sum();
            let files = offered.len() as u64;
            Inboxes::reserve(&state, &recipient, files, bytes, resumed)
                .map(|reservation| (reservation, resumable))
        })
        .await;
        let (reservation, resumable) = match prepared {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(refusal)) => return refused(refusal.code, refusal.message),
            Err(join) => return refused(ErrorCode::Internal, join.to_string()),
        };
        // One per file, in order.
        let answers = resumable
            .iter()
            .map(|copy| Resumable::answer(copy.as_ref()))
            .collect();
        leaving.resumable = resumable;
        let queue = writer::start(
            Arc::clone(&self.state),
            leaving,
            (reservation, permit),
            control.clone(),
        );
        (Some(queue), RecipientOutcome::Accepted(answers))
    }

    /// Answers `Inbox`: what waits for the asker, without what expired.
    pub(super) async fn on_inbox(&mut self) -> Result<(), SessionError> {
        let user = self.user().to_owned();
        if user == crate::auth::ANONYMOUS {
            let failed = Failed {
                code: ErrorCode::Forbidden,
                message: "anonymous clients have no inbox: log in as a user".into(),
            };
            return self.send(Response::Failed(failed)).await;
        }
        let state = Arc::clone(&self.state);
        let read = tokio::task::spawn_blocking(move || {
            let since = state.inboxes.unexpired_since();
            let (files, bytes) = state.catalog.inbox_used(&user, since)?;
            let mut listed = Vec::new();
            let mut after = 0;
            // Pages until enough unexpired files are found (expired ones may still be there).
            while listed.len() < MAX_INBOX_LISTED {
                let page = state.catalog.inbox_page(&user, after, MAX_INBOX_LISTED)?;
                let Some(last) = page.last() else { break };
                after = last.id;
                listed.extend(
                    page.iter()
                        .filter(|record| !state.inboxes.expired(record.left_ns))
                        .map(|record| state.inboxes.describe(record)),
                );
            }
            listed.truncate(MAX_INBOX_LISTED);
            Ok::<_, crate::catalog::CatalogError>(InboxList {
                files: listed,
                total_files: files,
                used: bytes,
                quota: state.inboxes.quota,
            })
        })
        .await;
        let list = match read {
            Ok(Ok(list)) => list,
            Ok(Err(err)) => return self.fail_inbox(err.to_string()).await,
            Err(join) => return self.fail_inbox(join.to_string()).await,
        };
        self.send(Response::Inbox(list)).await
    }

    async fn fail_inbox(&mut self, why: String) -> Result<(), SessionError> {
        let failed = Failed {
            code: ErrorCode::Storage,
            message: format!("the server could not read the inbox: {why}"),
        };
        self.send(Response::Failed(failed)).await
    }
}
