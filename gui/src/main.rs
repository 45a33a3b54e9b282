//! `ftc-gui`: opens the window (glow renderer). `--view NAME` opens on a view (connect,
//! send, files, people, history), `--server` and `--user` fill the Connect form, `--add
//! PATH` puts a path in the send queue, `--connect` logs in with the saved login at once.

use std::path::PathBuf;

use ft_gui::{DialogPicker, FtApp, History, View};

fn main() -> std::process::ExitCode {
    ft_tuning::use_fast_copies();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let (mut view, mut server, mut user, mut add) = (None, None, None, Vec::new());
    let mut connect = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--view" => view = args.next().as_deref().and_then(View::parse),
            "--server" => server = args.next(),
            "--user" => user = args.next(),
            "--add" => add.extend(args.next().map(PathBuf::from)),
            "--connect" => connect = true,
            "--help" | "-h" => {
                println!("ftc-gui [--view connect|send|files|people|history] [--server HOST:PORT] [--user NAME] [--add PATH]... [--connect]");
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("ftc-gui: unknown argument {other:?} (try --help)");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let inbox = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join("Downloads").join("ft"))
        .unwrap_or_else(|| PathBuf::from("ft-received"));
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("ft")
            .with_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    let result = eframe::run_native(
        "ft",
        options,
        Box::new(move |creation| {
            let context = creation.egui_ctx.clone();
            let mut app = FtApp::new(
                move || context.request_repaint(),
                History::in_config_dir(),
                inbox,
                Box::new(DialogPicker::default()),
            )?;
            app.prefill(server, user);
            app.queue(add);
            if let Some(view) = view {
                app.show_view(view);
            }
            if connect {
                app.log_in();
            }
            Ok(Box::new(app))
        }),
    );
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ftc-gui: cannot open the window: {err}");
            std::process::ExitCode::from(3)
        }
    }
}
