//! One module per view, each a `show(app, ui)`; `dialogs` draws what must be answered.

pub(crate) mod connect;
pub(crate) mod dialogs;
pub(crate) mod files;
pub(crate) mod history;
pub(crate) mod people;
pub(crate) mod send;

/// A size for people: `1.5 MiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A labelled single-line text field; the label is its accessible name.
pub(crate) fn field(ui: &mut egui::Ui, label: &str, text: &mut String, password: bool) {
    ui.horizontal(|ui| {
        let label = ui.label(label);
        ui.add(
            egui::TextEdit::singleline(text)
                .password(password)
                .desired_width(320.0),
        )
        .labelled_by(label.id);
    });
}
