//! A stand-in server for the library's unit tests: TLS with a throwaway certificate, the
//! handshake and the login done, then the test's own script.

use std::sync::Arc;

use ft_protocol::{
    codec::{self, MessageReader, MessageWriter},
    Authenticated, Fingerprint, Request, Response, Role, Welcome, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::{
    io::{ReadHalf, WriteHalf},
    net::{TcpListener, TcpStream},
};

use crate::{access::Access, address::ServerAddress};

type Stream = tokio_rustls::server::TlsStream<TcpStream>;

/// Requests the stand-in reads.
pub(crate) type Requests = MessageReader<ReadHalf<Stream>, Request>;

/// Responses the stand-in sends.
pub(crate) type Responses = MessageWriter<WriteHalf<Stream>, Response>;

/// A bound stand-in, and how a client reaches it.
pub(crate) struct StandIn {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    /// Its address.
    pub(crate) address: ServerAddress,
    /// Its certificate pinned, no credentials.
    pub(crate) access: Access,
}

impl StandIn {
    /// Binds a loopback port and makes a certificate.
    pub(crate) async fn bind() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string().parse().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = CertificateDer::from_pem_slice(made.cert.pem().as_bytes()).unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(made.signing_key.serialize_pem().as_bytes()).unwrap();
        let fingerprint = Fingerprint::of_certificate(cert.as_ref());
        let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        StandIn {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            address,
            access: Access {
                pinned: Some(fingerprint),
                ..Access::default()
            },
        }
    }

    /// Accepts one client and answers its Hello and its login.
    pub(crate) async fn accept(self) -> (Requests, Responses) {
        let (socket, _) = self.listener.accept().await.unwrap();
        let stream = self.acceptor.accept(socket).await.unwrap();
        let (read_half, write_half) = tokio::io::split(stream);
        let mut requests = codec::message_reader::<_, Request>(read_half);
        let mut responses = codec::message_writer::<_, Response>(write_half);
        let Some(Ok(Request::Hello(_))) = requests.next().await else {
            panic!("expected Hello");
        };
        let welcome = Welcome {
            protocol_version: PROTOCOL_VERSION,
            software: "test".into(),
            capabilities: Vec::new(),
            max_file_size: u64::MAX,
        };
        responses.send(Response::Welcome(welcome)).await.unwrap();
        let Some(Ok(Request::Authenticate(_))) = requests.next().await else {
            panic!("expected Authenticate");
        };
        let authenticated = Authenticated {
            user: "tester".into(),
            role: Role::Write,
        };
        responses
            .send(Response::Authenticated(authenticated))
            .await
            .unwrap();
        (requests, responses)
    }
}
