//! Everything indicatif: turns transfer events into a total bar and per-file bars on stderr.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use ft_client::TransferEvent;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The one template all bars share; only the label differs. At most 76 columns before the
/// message. A file bar's message (a word or two) takes what the terminal has left on its
/// line; the total bar's (file counts, retries and their reasons) gets a line of its own,
/// so that it is never cut to a few letters.
fn bar_style(label: &str, message_below: bool) -> ProgressStyle {
    ProgressStyle::with_template(&bar_template(label, message_below))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// The template of [`bar_style`].
fn bar_template(label: &str, message_below: bool) -> String {
    let message = if message_below {
        "\n{wide_msg}"
    } else {
        " {wide_msg}"
    };
    format!(
        "{label} [{{bar:16.cyan/blue}}] {{binary_bytes:>9}}/{{binary_total_bytes:<9}} \
         {{binary_bytes_per_sec:>11}} eta {{eta:>3}}{message}"
    )
}

/// Files smaller than this get no bar of their own: they come and go faster than a bar can
/// be drawn, and a bar per file would take about a tenth of the client's time on a batch of
/// small files. They still move the total.
const FILE_BAR_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// Progress bars for one batch, or nothing at all when they are not shown.
pub(crate) struct Progress {
    bars: Option<Bars>,
}

/// The bars themselves.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    files: Mutex<HashMap<usize, ProgressBar>>,
    /// Position of every file seen, so the total is their sum even across retries.
    positions: Mutex<HashMap<usize, u64>>,
    /// Where each file started in this run: bytes kept from an earlier run are taken off
    /// the total instead of counted as moved, so the rate and the bar show this run only.
    bases: Mutex<HashMap<usize, u64>>,
    /// Sizes of files seen; when the batch's total was not known up front (downloads), the
    /// total bar grows as files start.
    sizes: Mutex<HashMap<usize, u64>>,
    total_known: std::sync::atomic::AtomicBool,
    done: Mutex<(usize, usize)>,
}

impl Progress {
    /// Bars drawn on stderr when `visible`, otherwise nothing (events cost nothing then).
    pub(crate) fn new(visible: bool) -> Self {
        Self {
            bars: visible.then(Bars::new),
        }
    }

    /// Draws one event.
    pub(crate) fn handle(&self, event: &TransferEvent) {
        if let Some(bars) = &self.bars {
            bars.handle(event);
        }
    }

    /// Runs `print` with the bars hidden, so a line printed meanwhile is not torn by them.
    pub(crate) fn suspend(&self, print: impl FnOnce()) {
        match &self.bars {
            Some(bars) => bars.multi.suspend(print),
            None => print(),
        }
    }

    /// Removes the bars so the summary prints on a clean terminal.
    pub(crate) fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.finish();
        }
    }
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let total = multi.add(ProgressBar::new(0).with_style(bar_style("{prefix:>16.bold}", true)));
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(200));
        Self {
            multi,
            total,
            files: Mutex::new(HashMap::new()),
            positions: Mutex::new(HashMap::new()),
            bases: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            total_known: std::sync::atomic::AtomicBool::new(true),
            done: Mutex::new((0, 0)),
        }
    }

    fn handle(&self, event: &TransferEvent) {
        match event {
            TransferEvent::BatchStarted { files, bytes } => {
                self.total.set_length(*bytes);
                self.total_known.store(
                    *bytes > 0 || *files == 0,
                    std::sync::atomic::Ordering::Relaxed,
                );
                if let Ok(mut done) = self.done.lock() {
                    *done = (0, *files);
                }
                self.total.set_message(format!("0/{files} files"));
            }
            TransferEvent::FileStarted {
                index,
                name,
                size,
                offset,
            } => {
                let first_start = self
                    .sizes
                    .lock()
                    .map(|mut sizes| sizes.insert(*index, *size).is_none())
                    .unwrap_or(false);
                if first_start {
                    if !self.total_known.load(std::sync::atomic::Ordering::Relaxed) {
                        self.total.inc_length(*size);
                    }
                    if let Ok(mut bases) = self.bases.lock() {
                        bases.insert(*index, *offset);
                    }
                    let length = self.total.length().unwrap_or(0);
                    self.total.set_length(length.saturating_sub(*offset));
                }
                // Moving again: a retry's message is over.
                self.show_counts();
                if *size >= FILE_BAR_MIN_BYTES {
                    self.add_file_bar(*index, name, *size, *offset);
                }
                self.move_to(*index, *offset);
            }
            TransferEvent::Verifying { name, bytes, .. } => {
                self.total.set_message(format!(
                    "verifying kept bytes of {} ({})",
                    crate::terminal::safe(&shorten(name, 24)),
                    indicatif::BinaryBytes(*bytes)
                ));
            }
            TransferEvent::FileProgress { index, position } => {
                if let Ok(files) = self.files.lock() {
                    if let Some(bar) = files.get(index) {
                        bar.set_position(*position);
                    }
                }
                self.move_to(*index, *position);
            }
            TransferEvent::Retrying {
                attempt,
                max,
                delay,
                reason,
            } => {
                // The reason may be the server's words: never raw to the terminal.
                self.total.set_message(format!(
                    "retry {attempt}/{max} in {:.1}s: {}",
                    delay.as_secs_f64(),
                    crate::terminal::safe(reason)
                ));
            }
            TransferEvent::FileSkipped { index, size, .. } => {
                // Not sent: off the total, like bytes kept from an earlier run.
                let length = self.total.length().unwrap_or(0);
                self.total.set_length(length.saturating_sub(*size));
                self.finish_file(*index);
            }
            TransferEvent::FileStored { index, .. } | TransferEvent::FileFailed { index, .. } => {
                self.finish_file(*index);
            }
        }
    }

    /// Removes file `index`'s bar and counts it done.
    fn finish_file(&self, index: usize) {
        if let Ok(mut files) = self.files.lock() {
            if let Some(bar) = files.remove(&index) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        if let Ok(mut done) = self.done.lock() {
            done.0 += 1;
        }
        self.show_counts();
    }

    /// "done/all files" on the total bar.
    fn show_counts(&self) {
        if let Ok(done) = self.done.lock() {
            self.total
                .set_message(format!("{}/{} files", done.0, done.1));
        }
    }

    /// Shows a bar for file `index`, replacing the one of an earlier attempt.
    fn add_file_bar(&self, index: usize, name: &str, size: u64, offset: u64) {
        let bar = self
            .multi
            .add(ProgressBar::new(size).with_style(bar_style("{prefix:>16}", false)));
        bar.set_prefix(crate::terminal::safe(&shorten(name, 16)).into_owned());
        bar.set_position(offset);
        if offset > 0 {
            bar.set_message("resumed");
            // Bytes kept from an earlier run did not move now: the rate starts from here.
            bar.reset_eta();
        }
        if let Ok(mut files) = self.files.lock() {
            if let Some(old) = files.insert(index, bar) {
                old.finish_and_clear();
                self.multi.remove(&old);
            }
        }
    }

    /// Records that file `index` is at `position` and moves the total accordingly.
    fn move_to(&self, index: usize, position: u64) {
        let base = self
            .bases
            .lock()
            .ok()
            .and_then(|bases| bases.get(&index).copied())
            .unwrap_or(0);
        let position = position.saturating_sub(base);
        if let Ok(mut positions) = self.positions.lock() {
            let old = positions.insert(index, position).unwrap_or(0);
            let total = self.total.position();
            self.total
                .set_position((total + position).saturating_sub(old));
        }
    }

    fn finish(&self) {
        if let Ok(mut files) = self.files.lock() {
            for (_, bar) in files.drain() {
                bar.finish_and_clear();
            }
        }
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Keeps the end of a long name, which is usually the informative part.
fn shorten(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width {
        return name.to_owned();
    }
    let tail: String = name.chars().skip(count - (width - 1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template that does not parse would silently fall back to indicatif's default bar.
    #[test]
    fn both_templates_parse_and_only_the_total_puts_its_message_below() {
        for below in [false, true] {
            let template = bar_template("{prefix:>16}", below);
            assert!(
                ProgressStyle::with_template(&template).is_ok(),
                "{template}"
            );
            assert_eq!(template.contains("\n{wide_msg}"), below, "{template}");
        }
    }

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(shorten("short", 24), "short");
        let shortened = shorten("a-very-long-file-name-that-goes-on.tar.gz", 12);
        assert_eq!(shortened.chars().count(), 12);
        assert!(shortened.ends_with(".tar.gz"));
    }
}
