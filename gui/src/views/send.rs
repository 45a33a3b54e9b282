//! Send: a queue of files and folders, a row per file with its progress and outcome.

use crate::{
    app::{FtApp, Picking},
    engine::Command,
};

pub(crate) fn show(app: &mut FtApp, ui: &mut egui::Ui) {
    ui.heading("Send files to the server");
    ui.horizontal(|ui| {
        if ui.button("Add files…").clicked() {
            app.picking = Some(Picking::Queue);
            app.picker.pick_files();
        }
        if ui.button("Add folder…").clicked() {
            app.picking = Some(Picking::Queue);
            app.picker.pick_folder();
        }
        let connected = app.engine.model().connected;
        let ready = connected && !app.pending.is_empty();
        if ui
            .add_enabled(ready, egui::Button::new("Send queued files"))
            .clicked()
        {
            let paths = std::mem::take(&mut app.pending);
            app.engine.send(Command::Send(paths));
        }
        if !app.pending.is_empty() && ui.button("Clear").clicked() {
            app.pending.clear();
        }
    });
    // Dropped files join the queue too, where the platform delivers them.
    let dropped: Vec<std::path::PathBuf> = ui.ctx().input(|input| {
        input
            .raw
            .dropped_files
            .iter()
            .filter_map(|file| file.path.clone())
            .collect()
    });
    app.pending.extend(dropped);
    for path in &app.pending {
        ui.label(format!("waiting: {}", path.display()));
    }
    ui.separator();
    let model = app.engine.model();
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("queue").striped(true).show(ui, |ui| {
            ui.strong("File");
            ui.strong("Size");
            ui.strong("Progress");
            ui.strong("Status");
            ui.end_row();
            for row in &model.queue {
                ui.label(&row.name);
                ui.label(super::human(row.size));
                let fraction = if row.size == 0 {
                    1.0
                } else {
                    row.done as f32 / row.size as f32
                };
                ui.add(egui::ProgressBar::new(fraction).desired_width(160.0));
                ui.label(format!("{}: {}", row.name, row.status));
                ui.end_row();
            }
        });
    });
}
