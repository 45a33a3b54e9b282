//! A server address plus the connection to it, opened on first use and reopened after a
//! failure. Batch operations (send, get) and the interactive shell share one.

use crate::{access::Access, address::ServerAddress, connection::Client, error::ClientError};

/// A lazily connected session with one server.
#[derive(Debug)]
pub struct Session {
    address: ServerAddress,
    access: Access,
    client: Option<Client>,
    connected_once: bool,
}

impl Session {
    /// A session with `address`, connecting with `access`; nothing is connected yet.
    pub fn new(address: ServerAddress, access: Access) -> Self {
        Self {
            address,
            access,
            client: None,
            connected_once: false,
        }
    }

    /// The server's address.
    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// The open connection, connecting first if needed.
    pub async fn client(&mut self) -> Result<&mut Client, ClientError> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.address, &self.access).await?);
            self.connected_once = true;
        }
        self.client.as_mut().ok_or(ClientError::ConnectionClosed)
    }

    /// Forgets a connection that failed; the next [`Session::client`] reconnects.
    pub fn reset(&mut self) {
        self.client = None;
    }

    /// Whether a connection was ever established. Retrying only makes sense then: a server
    /// that was never reachable is reported at once.
    pub fn connected_once(&self) -> bool {
        self.connected_once
    }
}
