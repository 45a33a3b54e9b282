//! Connect: server, user and token, remembered in the config file `ftc` uses.

use crate::app::FtApp;

pub(crate) fn show(app: &mut FtApp, ui: &mut egui::Ui) {
    ui.heading("Connect to a server");
    super::field(ui, "Server", &mut app.connect.server, false);
    super::field(ui, "User", &mut app.connect.user, false);
    super::field(ui, "Token", &mut app.connect.token, true);
    ui.add_space(8.0);
    if ui.button("Log in").clicked() {
        app.engine.send(app.connect.command());
    }
    ui.add_space(8.0);
    ui.label(
        "The first time, the server's certificate fingerprint is shown for you to check \
         (the server's admin can tell you what it should be). A changed certificate is \
         refused.",
    );
}
