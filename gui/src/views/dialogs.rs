//! What must be answered before anything else: a new server's fingerprint, a changed
//! certificate (a blocking warning, never a button to click through), an incoming offer,
//! and a deletion.

use crate::{app::FtApp, engine::Command};

pub(crate) fn show(app: &mut FtApp, ctx: &egui::Context) {
    let (question, warning, offer) = {
        let model = app.engine.model();
        (
            model.trust_question,
            model.certificate_warning.clone(),
            model.offer.clone(),
        )
    };
    if let Some(fingerprint) = question {
        egui::Window::new("Trust this server?")
            .collapsible(false)
            .show(ctx, |ui| {
                ui.label(format!(
                    "First connection to {}. Its certificate's fingerprint is:",
                    app.connect.server
                ));
                ui.monospace(fingerprint.to_string());
                ui.label("Compare it with the one the server's admin gave you.");
                ui.horizontal(|ui| {
                    if ui.button("Trust and connect").clicked() {
                        app.engine.model().trust_question = None;
                        app.engine.send(Command::Connect {
                            server: app.connect.server.clone(),
                            user: app.connect.user.clone(),
                            token: app.connect.token.clone(),
                            trust: Some(fingerprint),
                        });
                    }
                    if ui.button("Cancel").clicked() {
                        app.engine.model().trust_question = None;
                    }
                });
            });
    }
    if let Some(warning) = warning {
        egui::Window::new("Certificate changed")
            .collapsible(false)
            .show(ctx, |ui| {
                ui.colored_label(
                    egui::Color32::RED,
                    "Not connected: the server's certificate changed.",
                );
                ui.label(warning);
                ui.label(
                    "Someone may be in the middle. If the server was really re-installed, \
                     its admin can tell you the new fingerprint; remove the old one from \
                     known_servers in ftc's config folder to trust it.",
                );
                if ui.button("Close").clicked() {
                    app.engine.model().certificate_warning = None;
                }
            });
    }
    if let Some(mut offer) = offer {
        egui::Window::new("Incoming files")
            .collapsible(false)
            .show(ctx, |ui| {
                let total: u64 = offer.files.iter().map(|(_, size)| size).sum();
                ui.label(format!(
                    "{} offers {} files ({}):",
                    offer.from,
                    offer.files.len(),
                    super::human(total)
                ));
                let mut changed = false;
                egui::ScrollArea::vertical()
                    .max_height(240.0)
                    .show(ui, |ui| {
                        for ((name, size), wanted) in
                            offer.files.iter().zip(offer.chosen.iter_mut())
                        {
                            let text = format!("{name} ({})", super::human(*size));
                            changed |= ui.checkbox(wanted, text).changed();
                        }
                    });
                if changed {
                    app.engine.model().offer = Some(offer.clone());
                }
                ui.horizontal(|ui| {
                    if ui.button("Accept").clicked() {
                        app.engine.send(Command::Answer(Some(offer.chosen.clone())));
                    }
                    if ui.button("Decline").clicked() {
                        app.engine.send(Command::Answer(None));
                    }
                });
            });
    }
    if app.confirm_delete {
        egui::Window::new("Delete files?")
            .collapsible(false)
            .show(ctx, |ui| {
                ui.label(format!(
                    "Delete {} files from the server? This cannot be undone.",
                    app.selected.len()
                ));
                ui.horizontal(|ui| {
                    if ui.button("Delete").clicked() {
                        let names: Vec<String> = app.selected.iter().cloned().collect();
                        app.selected.clear();
                        app.engine.send(Command::Delete(names));
                        app.confirm_delete = false;
                    }
                    if ui.button("Keep them").clicked() {
                        app.confirm_delete = false;
                    }
                });
            });
    }
}
