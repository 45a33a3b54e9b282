//! The transfers behind the window: a tokio runtime beside the UI thread runs the client
//! library (the same engine and events as `ftc`); the UI sends [`Command`]s and reads the
//! [`Model`], which the tasks update and then ask for a repaint. The UI never waits.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use ft_client::{
    config_files, download_files, plan_uploads,
    relay::{self, Incoming, ListenEvent, ListenOptions, OfferChoice},
    send_files, Access, ClientError, GetOptions, SendOptions, ServerAddress, Session, StoreStatus,
    TransferEvent,
};
use ft_protocol::{
    relay::{OnlineUser, RecipientOutcome},
    CatalogEntry, ConflictPolicy, Credentials, Fingerprint,
};
use tokio::sync::mpsc;

use crate::history::{History, Record};

/// What the window asks of the engine.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// Log in to a server; `trust` is the fingerprint the user agreed to for a server seen
    /// for the first time.
    Connect {
        server: String,
        user: String,
        token: String,
        trust: Option<Fingerprint>,
    },
    /// Upload the queue's files and folders; `overwrite` replaces files of the same name
    /// instead of keeping both.
    Send {
        paths: Vec<PathBuf>,
        overwrite: bool,
    },
    /// The server's figures (free space, limits) for the side panel.
    Info,
    /// Read the catalog, filtered by a glob.
    List(Option<String>),
    /// Download stored names into a folder.
    Download(Vec<String>, PathBuf),
    /// Delete stored names.
    Delete(Vec<String>),
    /// Offer files to online users.
    SendTo(Vec<String>, Vec<PathBuf>),
    /// Leave files in a user's inbox on the server, for when they next listen.
    LeaveFor(String, Vec<PathBuf>),
    /// Answer the offer shown: the files wanted (one flag each), or `None` to decline.
    Answer(Option<Vec<bool>>),
}

/// One row of the send queue.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueueRow {
    /// The local file (to retry it).
    pub(crate) path: PathBuf,
    /// When its bytes started moving in this run (for its rate).
    pub(crate) started: Option<std::time::Instant>,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) done: u64,
    pub(crate) status: String,
}

/// An offer waiting for the user's answer.
#[derive(Debug, Clone)]
pub(crate) struct PendingOffer {
    pub(crate) from: String,
    pub(crate) files: Vec<(String, u64)>,
    /// Which files the user ticked (all, at first).
    pub(crate) chosen: Vec<bool>,
}

/// Everything the window shows, kept by the engine's tasks.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// "connected as alice (write)", or why not.
    pub(crate) status: String,
    pub(crate) connected: bool,
    /// A server seen for the first time: its fingerprint, waiting for the user's trust.
    pub(crate) trust_question: Option<Fingerprint>,
    /// A certificate different from the one trusted before: the blocking warning.
    pub(crate) certificate_warning: Option<String>,
    pub(crate) queue: Vec<QueueRow>,
    pub(crate) busy: bool,
    pub(crate) listing: Vec<CatalogEntry>,
    pub(crate) online: Vec<OnlineUser>,
    pub(crate) offer: Option<PendingOffer>,
    pub(crate) received: Vec<String>,
    pub(crate) notice: Option<String>,
    pub(crate) history: Vec<Record>,
    /// Where received files go.
    pub(crate) inbox: PathBuf,
    /// The server's figures, once asked.
    pub(crate) info: Option<ft_protocol::ServerInfo>,
    /// When the current upload started (for the total rate and ETA).
    pub(crate) batch_started: Option<std::time::Instant>,
}

/// The engine: a runtime, a command queue, and the model it keeps.
pub(crate) struct Engine {
    runtime: tokio::runtime::Runtime,
    commands: mpsc::UnboundedSender<Command>,
    model: Arc<Mutex<Model>>,
    /// The transfer running now, to cancel it.
    current: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

/// Asks the window to draw again (egui's context, or nothing in tests without one).
pub(crate) type Repaint = Arc<dyn Fn() + Send + Sync>;

impl Engine {
    /// Starts the engine's runtime and its command task. `inbox`: where received files go.
    pub(crate) fn start(
        repaint: Repaint,
        history: History,
        inbox: PathBuf,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let model = Arc::new(Mutex::new(Model {
            history: history.load(),
            inbox,
            status: "not connected".into(),
            ..Model::default()
        }));
        let (commands, receiver) = mpsc::unbounded_channel();
        let current = Arc::new(Mutex::new(None));
        let worker = Worker {
            model: Arc::clone(&model),
            repaint,
            session: None,
            history,
            answers: None,
            current: Arc::clone(&current),
        };
        runtime.spawn(worker.run(receiver));
        Ok(Self {
            runtime,
            commands,
            model,
            current,
        })
    }

    /// Stops the transfer running now: the connection closes, the server keeps what it
    /// received for a resume, and the unfinished rows say cancelled.
    pub(crate) fn cancel(&self) {
        let running = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(running) = running {
            running.abort();
        }
    }

    /// Queues a command.
    pub(crate) fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// The model, to read or to change what the window owns (the queue).
    pub(crate) fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    /// Stops the engine's tasks.
    pub(crate) fn shutdown(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The task that runs commands one after the other on one session.
struct Worker {
    model: Arc<Mutex<Model>>,
    repaint: Repaint,
    session: Option<(ServerAddress, Access)>,
    history: History,
    /// Where the listener waits for the user's answer to an offer.
    answers: Option<std::sync::mpsc::Sender<Option<Vec<bool>>>>,
    /// The transfer running now (see [`Engine::cancel`]).
    current: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

impl Worker {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.recv().await {
            lock(&self.model).busy = true;
            (self.repaint)();
            self.handle(command).await;
            lock(&self.model).busy = false;
            (self.repaint)();
        }
    }

    fn update(&self, change: impl FnOnce(&mut Model)) {
        change(&mut lock(&self.model));
        (self.repaint)();
    }

    fn session(&self) -> Option<Session> {
        let (address, access) = self.session.clone()?;
        Some(Session::new(address, access))
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Connect {
                server,
                user,
                token,
                trust,
            } => self.connect(server, user, token, trust).await,
            Command::Send { paths, overwrite } => self.upload(paths, overwrite).await,
            Command::Info => self.info().await,
            Command::List(pattern) => self.list(pattern).await,
            Command::Download(names, folder) => self.download(names, folder).await,
            Command::Delete(names) => self.delete(names).await,
            Command::SendTo(users, paths) => self.send_to(users, paths).await,
            Command::LeaveFor(user, paths) => self.leave_for(user, paths).await,
            Command::Answer(chosen) => {
                if let Some(answers) = &self.answers {
                    let _ = answers.send(chosen);
                }
                self.update(|model| model.offer = None);
            }
        }
    }

    async fn connect(
        &mut self,
        server: String,
        user: String,
        token: String,
        trust: Option<Fingerprint>,
    ) {
        // A pasted connect string carries the server, the login and the fingerprint.
        let (server, user, token, trust) = if ft_client::ConnectString::looks_like(server.trim()) {
            match server.trim().parse::<ft_client::ConnectString>() {
                Ok(parsed) => (
                    parsed.server.to_string(),
                    parsed.credentials.user,
                    parsed.credentials.token,
                    Some(parsed.fingerprint),
                ),
                Err(err) => {
                    return self.update(|m| m.status = format!("bad connect string: {err}"))
                }
            }
        } else {
            (server, user, token, trust)
        };
        let address: ServerAddress = match server.trim().parse() {
            Ok(address) => address,
            Err(err) => return self.update(|m| m.status = format!("bad server address: {err}")),
        };
        let credentials = (!user.is_empty()).then(|| Credentials {
            user: user.clone(),
            token: token.clone(),
        });
        let known_servers = config_files::known_servers();
        let key = address.to_string();
        let known = known_servers
            .as_ref()
            .and_then(|known| known.lookup(&key).ok().flatten());
        if known.is_none() && trust.is_none() {
            // First contact: learn the certificate without trusting it (and without sending
            // the token to it), and ask.
            let timeout = Access::default().connect_timeout();
            match ft_client::probe_fingerprint(&address, timeout).await {
                Ok(fingerprint) => {
                    self.update(|m| {
                        m.trust_question = Some(fingerprint);
                        m.status = format!("{address} is new: check its fingerprint");
                    });
                }
                Err(err) => self.update(|m| m.status = format!("cannot connect: {err}")),
            }
            return;
        }
        if let (Some(fingerprint), Some(known)) = (trust, &known_servers) {
            if let Err(err) = known.add(&key, fingerprint) {
                return self.update(|m| m.status = format!("cannot record the fingerprint: {err}"));
            }
        }
        let access = Access {
            credentials,
            pinned: trust.or(known),
            known_servers,
            on_first_use: None,
            connect_timeout: None,
        };
        match ft_client::Client::connect(&address, &access).await {
            Ok(client) => {
                let who = client.authenticated().clone();
                if let (Some(fingerprint), false) = (access.pinned, user.is_empty()) {
                    let _ = config_files::save_login(&address, &user, &token, fingerprint);
                }
                self.session = Some((address.clone(), access));
                self.update(|m| {
                    m.connected = true;
                    m.trust_question = None;
                    m.status = format!("connected to {address} as {} ({})", who.user, who.role);
                });
                self.start_listening();
            }
            Err(ClientError::CertificateChanged(change)) => self.update(|m| {
                m.certificate_warning = Some(change.to_string());
                m.status = "the server's certificate changed: not connected".into();
            }),
            Err(err) => self.update(|m| m.status = format!("cannot connect: {err}")),
        }
    }

    /// A listening connection of its own: presence comes live, offers are asked about.
    fn start_listening(&mut self) {
        let Some(mut session) = self.session() else {
            return;
        };
        let model = Arc::clone(&self.model);
        let repaint = Arc::clone(&self.repaint);
        let (answers, answered) = std::sync::mpsc::channel::<Option<Vec<bool>>>();
        self.answers = Some(answers);
        let history = self.history.clone();
        tokio::spawn(async move {
            let inbox = lock(&model).inbox.clone();
            let options = ListenOptions {
                out_dir: inbox,
                force: false,
                blocked: Vec::new(),
                once: false,
            };
            let asking_model = Arc::clone(&model);
            let asking_repaint = Arc::clone(&repaint);
            let mut decide = move |incoming: Incoming<'_>| -> OfferChoice {
                lock(&asking_model).offer = Some(PendingOffer {
                    from: incoming.from.to_owned(),
                    files: incoming
                        .files
                        .iter()
                        .map(|f| (f.name.clone(), f.size))
                        .collect(),
                    chosen: vec![true; incoming.files.len()],
                });
                asking_repaint();
                // The answer comes from the window; no answer in time declines.
                match answered.recv_timeout(Duration::from_secs(120)) {
                    Ok(Some(chosen)) if chosen.iter().any(|wanted| *wanted) => {
                        OfferChoice::Accept(chosen)
                    }
                    _ => OfferChoice::Decline,
                }
            };
            let on_event = |event: ListenEvent| {
                let mut model = lock(&model);
                match event {
                    ListenEvent::Listening(users) => model.online = users,
                    ListenEvent::Presence(presence) => {
                        model.online.retain(|u| u.name != presence.user.name);
                        if presence.online {
                            model.online.push(presence.user);
                            model.online.sort_by(|a, b| a.name.cmp(&b.name));
                        }
                    }
                    ListenEvent::Saved {
                        from,
                        name,
                        path,
                        hash,
                        ..
                    } => {
                        model
                            .received
                            .push(format!("{name} from {from} → {}", path.display()));
                        let record = Record::new("received", &name, "verified", Some(hash));
                        history.append(&record);
                        model.history.push(record);
                    }
                    ListenEvent::Failed {
                        from,
                        name,
                        message,
                    } => model
                        .received
                        .push(format!("{name} from {from}: not saved: {message}")),
                    ListenEvent::Cancelled { from, message } => model
                        .received
                        .push(format!("the offer from {from} stopped: {message}")),
                    ListenEvent::Declined { from, .. } => model
                        .received
                        .push(format!("declined the offer from {from}")),
                }
                drop(model);
                repaint();
            };
            let _ = relay::listen(&mut session, &options, &mut decide, &on_event).await;
        });
    }

    async fn info(&mut self) {
        let Some(mut session) = self.session() else {
            return;
        };
        let answered = match session.client().await {
            Ok(client) => client.info().await,
            Err(err) => Err(err),
        };
        match answered {
            Ok(info) => self.update(|m| m.info = Some(info)),
            Err(err) => self.update(|m| m.notice = Some(err.to_string())),
        }
    }

    async fn upload(&mut self, paths: Vec<PathBuf>, overwrite: bool) {
        let Some(mut session) = self.session() else {
            return self.update(|m| m.notice = Some("connect first".into()));
        };
        let plan = match plan_uploads(&paths, false) {
            Ok(plan) => plan,
            Err(err) => return self.update(|m| m.notice = Some(err.to_string())),
        };
        let rows: Vec<QueueRow> = plan
            .files
            .iter()
            .map(|file| QueueRow {
                path: file.path.clone(),
                started: None,
                name: file.name.clone(),
                size: file.size,
                done: 0,
                status: "queued".into(),
            })
            .collect();
        self.update(|m| {
            m.queue = rows;
            m.batch_started = Some(std::time::Instant::now());
        });
        let model = Arc::clone(&self.model);
        let repaint = Arc::clone(&self.repaint);
        let history = self.history.clone();
        let on_event = move |event: TransferEvent| {
            let mut model = lock(&model);
            match event {
                TransferEvent::FileStarted { index, offset, .. } => {
                    if let Some(row) = model.queue.get_mut(index) {
                        row.done = offset;
                        row.started = Some(std::time::Instant::now());
                        row.status = if offset > 0 {
                            format!("sending (resumed after {})", crate::views::human(offset))
                        } else {
                            "sending".into()
                        };
                    }
                }
                TransferEvent::FileProgress { index, position } => {
                    if let Some(row) = model.queue.get_mut(index) {
                        row.done = position;
                    }
                }
                TransferEvent::FileStored {
                    index,
                    name,
                    stored_name,
                    hash,
                    ..
                } => {
                    if let Some(row) = model.queue.get_mut(index) {
                        row.done = row.size;
                        row.status = if stored_name == name {
                            "verified".into()
                        } else {
                            format!("verified, stored as {stored_name}")
                        };
                    }
                    let record = Record::new("sent", &name, "verified", Some(hash));
                    history.append(&record);
                    model.history.push(record);
                }
                TransferEvent::FileSkipped {
                    index,
                    name,
                    status,
                    ..
                } => {
                    let what = match status {
                        StoreStatus::NameTaken => "skipped: name taken",
                        _ => "unchanged (already there)",
                    };
                    if let Some(row) = model.queue.get_mut(index) {
                        row.done = row.size;
                        row.status = what.into();
                    }
                    let record = Record::new("sent", &name, what, None);
                    history.append(&record);
                    model.history.push(record);
                }
                TransferEvent::FileFailed {
                    index,
                    name,
                    message,
                    ..
                } => {
                    if let Some(row) = model.queue.get_mut(index) {
                        row.status = format!("failed: {message}");
                    }
                    let record = Record::new("sent", &name, &format!("failed: {message}"), None);
                    history.append(&record);
                    model.history.push(record);
                }
                TransferEvent::Retrying { reason, .. } => {
                    model.notice = Some(format!("retrying: {reason}"));
                }
                TransferEvent::Verifying { index, .. } => {
                    if let Some(row) = model.queue.get_mut(index) {
                        row.status = "verifying the bytes kept from before".into();
                    }
                }
                TransferEvent::BatchStarted { .. } => {}
            }
            drop(model);
            repaint();
        };
        let policy = if overwrite {
            ConflictPolicy::Overwrite
        } else {
            ConflictPolicy::KeepBoth
        };
        let options = SendOptions::new(policy);
        // A task of its own, so Cancel can stop it (dropping its connection).
        let transfer = tokio::spawn(async move {
            let report = send_files(&mut session, plan, options, &on_event).await;
            report.connection_error.map(|err| err.to_string())
        });
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(transfer.abort_handle());
        let ended = transfer.await;
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match ended {
            Ok(None) => {}
            Ok(Some(err)) => self.update(|m| m.notice = Some(err)),
            Err(_) => self.update(|m| {
                for row in &mut m.queue {
                    if row.status == "queued" || row.status.starts_with("sending") {
                        row.status = "cancelled (what arrived is kept for a resume)".into();
                    }
                }
                m.notice = Some("cancelled".into());
            }),
        }
    }

    async fn list(&mut self, pattern: Option<String>) {
        let Some(mut session) = self.session() else {
            return;
        };
        let listed = match session.client().await {
            Ok(client) => client.list(pattern).await,
            Err(err) => Err(err),
        };
        match listed {
            Ok(entries) => self.update(|m| m.listing = entries),
            Err(err) => self.update(|m| m.notice = Some(err.to_string())),
        }
    }

    async fn download(&mut self, names: Vec<String>, folder: PathBuf) {
        let Some(mut session) = self.session() else {
            return;
        };
        let options = GetOptions {
            force: false,
            retry: SendOptions::new(ConflictPolicy::KeepBoth),
            expected_bytes: 0,
        };
        let report = download_files(&mut session, &names, &folder, options, &|_| {}).await;
        let mut failures = Vec::new();
        for outcome in &report.outcomes {
            let (result, hash) = match &outcome.result {
                Ok(saved) => ("verified".to_owned(), Some(saved.hash)),
                Err(failure) => {
                    failures.push(format!("{}: {}", outcome.name, failure.message));
                    (format!("failed: {}", failure.message), None)
                }
            };
            let record = Record::new("downloaded", &outcome.name, &result, hash);
            self.history.append(&record);
            lock(&self.model).history.push(record);
        }
        let saved = report.outcomes.len() - failures.len();
        self.update(|m| {
            m.notice = if failures.is_empty() {
                Some(format!(
                    "{saved} downloaded and verified into {}",
                    folder.display()
                ))
            } else {
                Some(failures.join("; "))
            }
        });
    }

    async fn delete(&mut self, names: Vec<String>) {
        let Some(mut session) = self.session() else {
            return;
        };
        let mut problems = Vec::new();
        for name in &names {
            let result = match session.client().await {
                Ok(client) => client.delete(name).await.map(|_| ()),
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                problems.push(format!("{name}: {err}"));
            }
        }
        self.update(|m| {
            m.notice = (!problems.is_empty()).then(|| problems.join("; "));
        });
        self.list(None).await;
    }

    async fn send_to(&mut self, users: Vec<String>, paths: Vec<PathBuf>) {
        let Some(mut session) = self.session() else {
            return;
        };
        let plan = match plan_uploads(&paths, true) {
            Ok(plan) => plan,
            Err(err) => return self.update(|m| m.notice = Some(err.to_string())),
        };
        let timeout = Duration::from_secs(120);
        let result = relay::send_to_users(&mut session, plan, users, timeout, None, &|_| {}).await;
        self.report_offer(result, "saved and verified", "sent to");
    }

    /// Leaves `paths` in `user`'s inbox on the server; the notice says whether they are
    /// there (verified and durable) or why not.
    async fn leave_for(&mut self, user: String, paths: Vec<PathBuf>) {
        let Some(mut session) = self.session() else {
            return;
        };
        let plan = match plan_uploads(&paths, true) {
            Ok(plan) => plan,
            Err(err) => return self.update(|m| m.notice = Some(err.to_string())),
        };
        let result =
            relay::leave_for_users(&mut session, plan.files, vec![user], None, &|_| {}).await;
        self.report_offer(result, "left in the inbox on the server", "left for");
    }

    /// The notice for an offer (or a leave): per recipient, how many files are `done`, or
    /// why none; each such file goes into the history as `kind`.
    fn report_offer(
        &mut self,
        result: Result<relay::OfferReport, ClientError>,
        done: &str,
        kind: &str,
    ) {
        let report = match result {
            Ok(report) => report,
            Err(err) => return self.update(|m| m.notice = Some(err.to_string())),
        };
        let mut lines = Vec::new();
        for recipient in &report.recipients {
            let why_not = match &recipient.outcome {
                RecipientOutcome::Accepted(_) => None,
                RecipientOutcome::Declined => Some("declined".to_owned()),
                RecipientOutcome::TimedOut => Some("no answer in time".to_owned()),
                RecipientOutcome::NotOnline => Some("not online".to_owned()),
                RecipientOutcome::Refused { message, .. } => Some(message.clone()),
            };
            if let Some(why) = why_not {
                lines.push(format!("{}: {why}", recipient.user));
                continue;
            }
            lines.push(format!(
                "{}: {} of {} {done}",
                recipient.user,
                recipient.saved.len(),
                report.files.len()
            ));
            for (name, why) in &recipient.failed {
                lines.push(format!("{name}: {why}"));
            }
            if let Some(stopped) = &recipient.stopped {
                lines.push(format!("{}: {stopped}", recipient.user));
            }
            for (name, _) in &recipient.saved {
                let record = Record::new(kind, name, &recipient.user, None);
                self.history.append(&record);
                lock(&self.model).history.push(record);
            }
        }
        self.update(|m| m.notice = Some(lines.join("; ")));
    }
}
