//! ftc-gui: a desktop window over the ft client library. The same engine and events as
//! `ftc` do the work on a tokio runtime beside the UI thread (see `engine`); the views only
//! draw the model and send commands, so there is no transfer logic here.

pub mod app;
mod engine;
pub mod history;
pub mod picker;
mod views;

pub use app::{FtApp, View};
pub use history::History;
pub use picker::{DialogPicker, Picker, ScriptedPicker};
