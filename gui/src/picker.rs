//! Choosing local files and folders. The window asks a [`Picker`]; the desktop one is a
//! dialog drawn by egui itself (no desktop portal or GTK needed), and tests inject paths.

use std::path::PathBuf;

/// Where the window gets local paths from.
pub trait Picker: Send {
    /// Starts choosing files to send (the result comes from [`Picker::poll`]).
    fn pick_files(&mut self);
    /// Starts choosing a folder: to send, or to download into.
    fn pick_folder(&mut self);
    /// Draws the dialog if one is open; the paths chosen, once.
    fn poll(&mut self, ctx: &egui::Context) -> Option<Vec<PathBuf>>;
}

/// The desktop picker: egui_file's dialog.
#[derive(Default)]
pub struct DialogPicker {
    dialog: Option<egui_file::FileDialog>,
}

impl Picker for DialogPicker {
    fn pick_files(&mut self) {
        let mut dialog = egui_file::FileDialog::open_file().multi_select(true);
        dialog.open();
        self.dialog = Some(dialog);
    }

    fn pick_folder(&mut self) {
        let mut dialog = egui_file::FileDialog::select_folder();
        dialog.open();
        self.dialog = Some(dialog);
    }

    fn poll(&mut self, ctx: &egui::Context) -> Option<Vec<PathBuf>> {
        let dialog = self.dialog.as_mut()?;
        if !dialog.show(ctx).selected() {
            return None;
        }
        let chosen: Vec<PathBuf> = match dialog.selection() {
            paths if !paths.is_empty() => paths.into_iter().map(PathBuf::from).collect(),
            _ => dialog.path().map(PathBuf::from).into_iter().collect(),
        };
        self.dialog = None;
        Some(chosen)
    }
}

/// A picker that hands out paths given in advance (tests, and `--add` on the command line).
#[derive(Default)]
pub struct ScriptedPicker {
    /// Answers to the next picks, in order.
    pub answers: std::collections::VecDeque<Vec<PathBuf>>,
    ready: Option<Vec<PathBuf>>,
}

impl Picker for ScriptedPicker {
    fn pick_files(&mut self) {
        self.ready = self.answers.pop_front();
    }

    fn pick_folder(&mut self) {
        self.ready = self.answers.pop_front();
    }

    fn poll(&mut self, _ctx: &egui::Context) -> Option<Vec<PathBuf>> {
        self.ready.take()
    }
}
