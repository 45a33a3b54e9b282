//! People: who is online (live, from the listening connection), send files to those
//! ticked, leave files for someone offline, and what arrived from others.

use crate::app::{FtApp, Picking};

pub(crate) fn show(app: &mut FtApp, ui: &mut egui::Ui) {
    ui.heading("People online");
    let (online, received) = {
        let model = app.engine.model();
        (model.online.clone(), model.received.clone())
    };
    for user in &online {
        let mut ticked = app.people.contains(&user.name);
        let listening = if user.listening { " (listening)" } else { "" };
        if ui
            .checkbox(&mut ticked, format!("{}{listening}", user.name))
            .changed()
        {
            if ticked {
                app.people.insert(user.name.clone());
            } else {
                app.people.remove(&user.name);
            }
        }
    }
    if online.is_empty() {
        ui.label("Nobody is online (connect first).");
    }
    let any = !app.people.is_empty();
    pick_files_button(app, ui, "Send files…", any, Picking::PeopleFiles);
    ui.separator();
    ui.strong("Someone offline");
    ui.label("Files left for them wait in their inbox on the server until they next connect.");
    ui.horizontal(|ui| {
        super::field(ui, "Leave for", &mut app.leave_for, false);
        let named = !app.leave_for.trim().is_empty();
        pick_files_button(app, ui, "Leave files…", named, Picking::LeaveFiles);
    });
    ui.separator();
    ui.strong("Received");
    for line in received.iter().rev().take(50) {
        ui.label(line);
    }
    let inbox = app.engine.model().inbox.clone();
    ui.horizontal(|ui| {
        ui.label(format!("Saved in {}", inbox.display()));
        if ui.button("Open folder").clicked() {
            // The desktop's own file manager; nothing happens where there is none.
            let _ = std::fs::create_dir_all(&inbox);
            let _ = std::process::Command::new("xdg-open").arg(&inbox).spawn();
        }
    });
}

/// A button that, when enabled and clicked, asks the picker for files to use `for_what`.
fn pick_files_button(
    app: &mut FtApp,
    ui: &mut egui::Ui,
    label: &str,
    enabled: bool,
    for_what: Picking,
) {
    if ui.add_enabled(enabled, egui::Button::new(label)).clicked() {
        app.picking = Some(for_what);
        app.picker.pick_files();
    }
}
