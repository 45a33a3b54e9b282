//! History: what was sent, received and downloaded, newest first, with outcome and hash.

use crate::app::FtApp;

pub(crate) fn show(app: &mut FtApp, ui: &mut egui::Ui) {
    ui.heading("History");
    let records = app.engine.model().history.clone();
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("history").striped(true).show(ui, |ui| {
            ui.strong("What");
            ui.strong("File");
            ui.strong("Outcome");
            ui.end_row();
            for record in records.iter().rev() {
                ui.label(&record.kind);
                let name = ui.label(&record.name);
                if let Some(hash) = &record.hash {
                    name.on_hover_text(format!("BLAKE3 {hash}"));
                }
                ui.label(&record.outcome);
                ui.end_row();
            }
        });
    });
}
