//! The window: a tab per view (Connect, Send, Server files, People, History) over one
//! [`Engine`], and the dialogs that must be answered (a new server's fingerprint, a changed
//! certificate, an incoming offer). Every control has a label, which is also how screen
//! readers and the tests find it.

use std::path::PathBuf;

use crate::{
    engine::{Command, Engine, Repaint},
    history::History,
    picker::Picker,
    views,
};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Server, user, token.
    Connect,
    /// The send queue.
    Send,
    /// The server's catalog.
    Files,
    /// Online users and offers.
    People,
    /// What happened, in this and earlier runs.
    History,
}

impl View {
    /// Every view, in tab order.
    pub const ALL: [View; 5] = [
        View::Connect,
        View::Send,
        View::Files,
        View::People,
        View::History,
    ];

    fn title(self) -> &'static str {
        match self {
            View::Connect => "Connect",
            View::Send => "Send",
            View::Files => "Server files",
            View::People => "People",
            View::History => "History",
        }
    }

    /// The view named `name` (as on the command line: connect, send, files, people,
    /// history).
    pub fn parse(name: &str) -> Option<View> {
        match name {
            "connect" => Some(View::Connect),
            "send" => Some(View::Send),
            "files" => Some(View::Files),
            "people" => Some(View::People),
            "history" => Some(View::History),
            _ => None,
        }
    }
}

/// What the Connect view's fields hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectForm {
    pub(crate) server: String,
    pub(crate) user: String,
    pub(crate) token: String,
    /// The fingerprint the config file pins for its server (`ftc login`), if any.
    pub(crate) pinned: Option<(String, ft_protocol::Fingerprint)>,
}

impl ConnectForm {
    /// The login command for what the form holds: a server the config file pins is
    /// trusted with that fingerprint, any other is asked about.
    pub(crate) fn command(&self) -> Command {
        let trust = self
            .pinned
            .as_ref()
            .filter(|(server, _)| server == self.server.trim())
            .map(|(_, fingerprint)| *fingerprint);
        Command::Connect {
            server: self.server.clone(),
            user: self.user.clone(),
            token: self.token.clone(),
            trust,
        }
    }
}

/// What a view's picker result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Picking {
    /// Files or a folder for the send queue.
    Queue,
    /// The folder to download into.
    DownloadFolder,
    /// Files for the selected people.
    PeopleFiles,
    /// Files to leave for someone offline ([`FtApp::leave_for`]).
    LeaveFiles,
}

/// The application: its views' state, the picker, and the engine.
pub struct FtApp {
    pub(crate) view: View,
    pub(crate) engine: Engine,
    pub(crate) picker: Box<dyn Picker>,
    pub(crate) picking: Option<Picking>,
    pub(crate) connect: ConnectForm,
    /// Local paths waiting in the send queue (not sent yet).
    pub(crate) pending: Vec<PathBuf>,
    pub(crate) filter: String,
    /// Catalog rows ticked for download or deletion, by name.
    pub(crate) selected: std::collections::BTreeSet<String>,
    pub(crate) sort_by_size: bool,
    pub(crate) confirm_delete: bool,
    /// People ticked to send to.
    pub(crate) people: std::collections::BTreeSet<String>,
    /// The user to leave files for (typed: they are offline, so not in the list).
    pub(crate) leave_for: String,
    /// The catalog was asked for since the connection (it loads when the view opens).
    pub(crate) listed: bool,
    /// Replace files of the same name on the server (instead of keeping both).
    pub(crate) overwrite: bool,
}

impl FtApp {
    /// An application whose engine asks `repaint` to draw again, keeps its history in
    /// `history`, saves received files in `inbox` and gets paths from `picker`.
    pub fn new(
        repaint: impl Fn() + Send + Sync + 'static,
        history: History,
        inbox: PathBuf,
        picker: Box<dyn Picker>,
    ) -> std::io::Result<Self> {
        let repaint: Repaint = std::sync::Arc::new(repaint);
        let engine = Engine::start(repaint, history, inbox)?;
        let settings = saved_login();
        Ok(Self {
            view: View::Connect,
            engine,
            picker,
            picking: None,
            connect: settings,
            pending: Vec::new(),
            filter: String::new(),
            selected: Default::default(),
            sort_by_size: false,
            confirm_delete: false,
            people: Default::default(),
            leave_for: String::new(),
            listed: false,
            overwrite: false,
        })
    }

    /// Puts paths in the send queue.
    pub fn queue(&mut self, paths: Vec<PathBuf>) {
        self.pending.extend(paths);
    }

    /// The view shown.
    pub fn view(&self) -> View {
        self.view
    }

    /// Sets the Connect form's server field.
    pub fn set_server(&mut self, server: &str) {
        self.connect.server = server.to_owned();
    }

    /// Sets the Connect form's token field.
    pub fn set_token(&mut self, token: &str) {
        self.connect.token = token.to_owned();
    }

    /// Logs in with what the Connect form holds (`--connect`: the saved login).
    pub fn log_in(&mut self) {
        self.engine.send(self.connect.command());
    }

    /// Opens on `view`.
    pub fn show_view(&mut self, view: View) {
        self.view = view;
    }

    /// Fills the Connect form (the command line's `--server`, `--user`).
    pub fn prefill(&mut self, server: Option<String>, user: Option<String>) {
        if let Some(server) = server {
            self.connect.server = server;
        }
        if let Some(user) = user {
            self.connect.user = user;
        }
    }

    /// Draws one frame.
    pub fn ui(&mut self, ctx: &egui::Context) {
        if let Some(paths) = self.picker.poll(ctx) {
            self.picked(paths);
        }
        egui::TopBottomPanel::top("tabs").show(ctx, |ui| {
            ui.horizontal(|ui| {
                for view in View::ALL {
                    ui.selectable_value(&mut self.view, view, view.title());
                }
            });
        });
        egui::TopBottomPanel::bottom("status").show(ctx, |ui| {
            let model = self.engine.model();
            ui.horizontal(|ui| {
                if model.busy {
                    ui.spinner();
                }
                ui.label(format!("Status: {}", model.status));
            });
            if let Some(notice) = &model.notice {
                ui.label(format!("Note: {notice}"));
            }
        });
        egui::CentralPanel::default().show(ctx, |ui| match self.view {
            View::Connect => views::connect::show(self, ui),
            View::Send => views::send::show(self, ui),
            View::Files => views::files::show(self, ui),
            View::People => views::people::show(self, ui),
            View::History => views::history::show(self, ui),
        });
        views::dialogs::show(self, ctx);
    }

    /// Paths came back from the picker.
    fn picked(&mut self, paths: Vec<PathBuf>) {
        match self.picking.take() {
            Some(Picking::Queue) => {
                for path in paths {
                    if !self.pending.contains(&path) {
                        self.pending.push(path);
                    }
                }
            }
            Some(Picking::DownloadFolder) => {
                if let Some(folder) = paths.into_iter().next() {
                    let names: Vec<String> = self.selected.iter().cloned().collect();
                    self.engine.send(Command::Download(names, folder));
                }
            }
            Some(Picking::PeopleFiles) => {
                let users: Vec<String> = self.people.iter().cloned().collect();
                if !paths.is_empty() && !users.is_empty() {
                    self.engine.send(Command::SendTo(users, paths));
                }
            }
            Some(Picking::LeaveFiles) => {
                let user = self.leave_for.trim().to_owned();
                if !paths.is_empty() && !user.is_empty() {
                    self.engine.send(Command::LeaveFor(user, paths));
                }
            }
            None => {}
        }
    }

    /// Stops the engine.
    pub fn shutdown(self) {
        self.engine.shutdown();
    }
}

impl eframe::App for FtApp {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.ui(ctx);
    }
}

/// The server and user from the config file ftc uses (the token stays in the file; the
/// form's token field is filled from it only when the server matches).
fn saved_login() -> ConnectForm {
    let Some(path) = ft_client::config_files::config_path() else {
        return ConnectForm::default();
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return ConnectForm::default();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return ConnectForm::default();
    };
    let text = |key: &str| {
        table
            .get(key)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let pinned = text("fingerprint")
        .parse::<ft_protocol::Fingerprint>()
        .ok()
        .map(|fingerprint| (text("server"), fingerprint));
    ConnectForm {
        server: text("server"),
        user: text("user"),
        token: text("token"),
        pinned,
    }
}
