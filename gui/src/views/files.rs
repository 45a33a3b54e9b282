//! Server files: the catalog as a table, filtered with the same glob as `ftc list`, sorted,
//! with Download selected and Delete (after a confirmation).

use crate::{
    app::{FtApp, Picking},
    engine::Command,
};

pub(crate) fn show(app: &mut FtApp, ui: &mut egui::Ui) {
    ui.heading("Files on the server");
    if !app.listed && app.engine.model().connected {
        app.listed = true;
        app.engine.send(Command::List(None));
        app.engine.send(Command::Info);
    }
    if let Some(info) = app.engine.model().info.clone() {
        egui::SidePanel::right("server-info").show_inside(ui, |ui| {
            ui.strong("Server");
            ui.label(format!(
                "{} files, {}",
                info.files,
                super::human(info.bytes)
            ));
            ui.label(format!("free: {}", super::human(info.free_bytes)));
            ui.label(format!(
                "largest file: {}",
                super::human(info.max_file_size)
            ));
            ui.label(format!(
                "kept for resume: {}",
                super::human(info.partial_bytes)
            ));
            ui.label(&info.software);
        });
    }
    ui.horizontal(|ui| {
        let label = ui.label("Filter");
        ui.add(egui::TextEdit::singleline(&mut app.filter).hint_text("*.jpg"))
            .labelled_by(label.id);
        if ui.button("Refresh").clicked() {
            let pattern = (!app.filter.trim().is_empty()).then(|| app.filter.trim().to_owned());
            app.engine.send(Command::List(pattern));
            app.engine.send(Command::Info);
        }
        ui.checkbox(&mut app.sort_by_size, "Sort by size");
    });
    ui.horizontal(|ui| {
        let any = !app.selected.is_empty();
        if ui
            .add_enabled(any, egui::Button::new("Download selected…"))
            .clicked()
        {
            app.picking = Some(Picking::DownloadFolder);
            app.picker.pick_folder();
        }
        if ui
            .add_enabled(any, egui::Button::new("Delete selected"))
            .clicked()
        {
            app.confirm_delete = true;
        }
    });
    ui.separator();
    let mut entries = app.engine.model().listing.clone();
    if app.sort_by_size {
        entries.sort_by_key(|entry| entry.size);
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("catalog").striped(true).show(ui, |ui| {
            ui.strong("");
            ui.strong("Name");
            ui.strong("Size");
            ui.strong("Added");
            ui.strong("Owner");
            ui.end_row();
            for entry in &entries {
                let mut ticked = app.selected.contains(&entry.name);
                if ui
                    .checkbox(&mut ticked, format!("select {}", entry.name))
                    .changed()
                {
                    if ticked {
                        app.selected.insert(entry.name.clone());
                    } else {
                        app.selected.remove(&entry.name);
                    }
                }
                ui.label(&entry.name)
                    .on_hover_text(format!("BLAKE3 {}", entry.hash));
                ui.label(super::human(entry.size));
                ui.label(local_time(&entry.added_at));
                ui.label(&entry.owner);
                ui.end_row();
            }
        });
    });
}

/// A catalog time in local time, to the minute.
fn local_time(rfc3339: &str) -> String {
    rfc3339.get(..16).unwrap_or(rfc3339).replace('T', " ")
}
