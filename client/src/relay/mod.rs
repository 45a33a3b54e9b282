//! Sending files to other online users through the server, and receiving them: the
//! sender's side ([`send_to_users`]) and the listener's ([`listen`]). The protocol's relay
//! section says what travels; here is what each side does with it.

mod file_writer;
mod listen;
mod send;

pub use listen::{listen, Incoming, ListenEvent, ListenOptions, OfferChoice};
pub use send::{leave_for_users, send_to_users, OfferReport, RecipientReport};

use ft_protocol::relay::{InboxList, InboxRequest, OnlineUser, UserList, UsersRequest};
use ft_protocol::{Request, Response};

use crate::{
    connection::{interpret, unexpected, Client, REPLY_TIMEOUT},
    error::ClientError,
};

impl Client {
    /// The users online now.
    pub async fn users(&mut self) -> Result<Vec<OnlineUser>, ClientError> {
        use futures::SinkExt as _;
        self.writer.send(Request::Users(UsersRequest {})).await?;
        let answer =
            tokio::time::timeout(REPLY_TIMEOUT, futures::StreamExt::next(&mut self.reader))
                .await
                .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT, "waiting for the user list"))?;
        match interpret(answer)? {
            Response::Users(UserList { users }) => Ok(users),
            other => Err(unexpected(other)),
        }
    }

    /// What waits in this user's inbox on the server (files others left with `--leave`).
    pub async fn inbox(&mut self) -> Result<InboxList, ClientError> {
        use futures::SinkExt as _;
        self.writer.send(Request::Inbox(InboxRequest {})).await?;
        let answer =
            tokio::time::timeout(REPLY_TIMEOUT, futures::StreamExt::next(&mut self.reader))
                .await
                .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT, "waiting for the inbox"))?;
        match interpret(answer)? {
            Response::Inbox(list) => Ok(list),
            Response::Failed(ft_protocol::Failed { code, message }) => {
                Err(ClientError::Failed { code, message })
            }
            other => Err(unexpected(other)),
        }
    }
}
