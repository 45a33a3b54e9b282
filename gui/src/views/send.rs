//! Send: a queue of files and folders, a row per file with its progress, rate and outcome,
//! a total bar with rate and ETA, Cancel, Retry failed, and keep-both or overwrite.

use crate::{
    app::{FtApp, Picking},
    engine::{Command, QueueRow},
};

pub(crate) fn show(app: &mut FtApp, ui: &mut egui::Ui) {
    ui.heading("Send files to the server");
    let (connected, busy) = {
        let model = app.engine.model();
        (model.connected, model.busy)
    };
    ui.horizontal(|ui| {
        if ui.button("Add files…").clicked() {
            app.picking = Some(Picking::Queue);
            app.picker.pick_files();
        }
        if ui.button("Add folder…").clicked() {
            app.picking = Some(Picking::Queue);
            app.picker.pick_folder();
        }
        let ready = connected && !app.pending.is_empty() && !busy;
        if ui
            .add_enabled(ready, egui::Button::new("Send queued files"))
            .clicked()
        {
            let paths = std::mem::take(&mut app.pending);
            app.engine.send(Command::Send {
                paths,
                overwrite: app.overwrite,
            });
        }
        if ui.add_enabled(busy, egui::Button::new("Cancel")).clicked() {
            app.engine.cancel();
        }
        let failed: Vec<std::path::PathBuf> = app
            .engine
            .model()
            .queue
            .iter()
            .filter(|row| row.status.starts_with("failed") || row.status.starts_with("cancelled"))
            .map(|row| row.path.clone())
            .collect();
        if ui
            .add_enabled(
                connected && !busy && !failed.is_empty(),
                egui::Button::new("Retry failed"),
            )
            .clicked()
        {
            app.engine.send(Command::Send {
                paths: failed,
                overwrite: app.overwrite,
            });
        }
        if !app.pending.is_empty() && ui.button("Clear").clicked() {
            app.pending.clear();
        }
    });
    ui.horizontal(|ui| {
        ui.label("When the server has a file of the same name:");
        ui.radio_value(&mut app.overwrite, false, "Keep both");
        ui.radio_value(&mut app.overwrite, true, "Overwrite");
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
    total_bar(ui, &model.queue, model.batch_started);
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("queue").striped(true).show(ui, |ui| {
            ui.strong("File");
            ui.strong("Size");
            ui.strong("Progress");
            ui.strong("Rate");
            ui.strong("Status");
            ui.end_row();
            for row in &model.queue {
                ui.label(&row.name);
                ui.label(super::human(row.size));
                ui.add(egui::ProgressBar::new(fraction(row.done, row.size)).desired_width(160.0));
                let rate = row
                    .started
                    .filter(|_| row.status.starts_with("sending"))
                    .map(|started| per_second(row.done, started.elapsed().as_secs_f64()))
                    .unwrap_or_default();
                ui.label(rate);
                ui.label(format!("{}: {}", row.name, row.status));
                ui.end_row();
            }
        });
    });
}

/// The whole batch: bytes done of all, rate and time left.
fn total_bar(ui: &mut egui::Ui, queue: &[QueueRow], started: Option<std::time::Instant>) {
    if queue.is_empty() {
        return;
    }
    let total: u64 = queue.iter().map(|row| row.size).sum();
    let done: u64 = queue.iter().map(|row| row.done).sum();
    let seconds = started.map_or(0.0, |started| started.elapsed().as_secs_f64());
    let rate = done as f64 / seconds.max(0.001);
    let left = if done < total && rate > 0.0 {
        format!(", about {:.0} s left", (total - done) as f64 / rate)
    } else {
        String::new()
    };
    ui.add(
        egui::ProgressBar::new(fraction(done, total))
            .text(format!(
                "total: {} of {}, {}{left}",
                super::human(done),
                super::human(total),
                per_second(done, seconds)
            ))
            .desired_width(ui.available_width()),
    );
}

fn fraction(done: u64, size: u64) -> f32 {
    if size == 0 {
        1.0
    } else {
        done as f32 / size as f32
    }
}

fn per_second(bytes: u64, seconds: f64) -> String {
    format!(
        "{}/s",
        super::human((bytes as f64 / seconds.max(0.001)) as u64)
    )
}
