//! A stand-in server for tests of how `ftc` treats what a server says: TLS with a throwaway
//! certificate (registered, so `ftc` pins it), then scripted answers.

use crate::registry;

/// A stand-in server that answers each request, in order, with the next of `replies`.
pub fn scripted_server(replies: Vec<ft_protocol::Response>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let identity = ft_server::tls::TlsIdentity::ephemeral().unwrap();
    registry::register(
        &addr.to_string(),
        registry::Login {
            fingerprint: identity.fingerprint,
            user: "nobody".to_owned(),
            token: "never-checked".to_owned(),
        },
    );
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let Ok((socket, _)) = listener.accept() else {
            return;
        };
        let Ok(session) = rustls::ServerConnection::new(identity.config) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(session, socket);
        for reply in replies {
            let mut header = [0u8; 4];
            if tls.read_exact(&mut header).is_err() {
                return;
            }
            let mut request = vec![0u8; u32::from_be_bytes(header) as usize];
            if tls.read_exact(&mut request).is_err() {
                return;
            }
            let payload = ft_protocol::codec::encode(&reply).unwrap();
            let _ = tls.write_all(&(payload.len() as u32).to_be_bytes());
            let _ = tls.write_all(&payload);
            let _ = tls.flush();
        }
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    addr
}
