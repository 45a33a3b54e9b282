//! `ftc`: parses arguments, runs the library, and draws or prints what it reports.

/// Like `println!`, but a closed stdout (`ftc list | head`) is not a panic: the reader has
/// what it wanted, so the rest is dropped quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod cli;
mod exit;
mod progress;

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use ft_client::{
    plan_uploads, send_files, transfer::CONNECTION_LOST, Client, ClientError, SendOptions,
    SendReport,
};
use ft_protocol::ConflictPolicy;
use indicatif::BinaryBytes;

use crate::{
    cli::{Cli, Command, ListArgs, SendArgs},
    exit::Exit,
    progress::Progress,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Send(args) => send(args).await,
        Command::List(args) => list(args).await,
    };
    exit.into()
}

fn report_error(err: &ClientError) -> Exit {
    match err {
        ClientError::LocalFiles(problems) => {
            for problem in problems {
                eprintln!("ftc: error: {problem}");
            }
        }
        other => eprintln!("ftc: error: {other}"),
    }
    Exit::for_error(err)
}

async fn send(args: SendArgs) -> Exit {
    let files = match plan_uploads(&args.paths) {
        Ok(files) => files,
        Err(err) => return report_error(&err),
    };
    let progress = Progress::new(!args.no_progress && std::io::stderr().is_terminal());
    let conflict = if args.overwrite {
        ConflictPolicy::Overwrite
    } else {
        ConflictPolicy::KeepBoth
    };
    let options = SendOptions {
        retries: args.retries,
        ..SendOptions::new(conflict)
    };
    let on_event = |event| progress.handle(&event);
    let report = send_files(&args.server, &files, options, &on_event).await;
    progress.finish();
    print_report(&report)
}

/// Prints what landed (stdout), what did not (stderr), and one summary line (stdout).
fn print_report(report: &SendReport) -> Exit {
    for (file, stored) in report.stored() {
        let renamed = if stored.stored_name == file.name {
            String::new()
        } else {
            format!(" as {}", stored.stored_name)
        };
        out!(
            "stored {}{renamed} ({} bytes, blake3 {})",
            file.name,
            stored.size,
            stored.hash
        );
    }
    let mut unconfirmed = 0;
    for (file, failure) in report.failed() {
        if failure.code == CONNECTION_LOST {
            unconfirmed += 1;
            continue;
        }
        eprintln!(
            "ftc: not stored: {}: {} ({})",
            file.path.display(),
            failure.message,
            failure.code
        );
    }
    if unconfirmed > 0 {
        eprintln!("ftc: {unconfirmed} files not stored: the server did not confirm them");
    }
    let stored_files = report.stored().count();
    let stored_bytes: u64 = report.stored().map(|(_, stored)| stored.size).sum();
    let seconds = report.elapsed.as_secs_f64().max(1e-6);
    let rate = BinaryBytes((stored_bytes as f64 / seconds) as u64);
    let verdict = if report.all_stored() {
        format!("all {stored_files} verified (BLAKE3)")
    } else {
        format!("{} failed", report.outcomes.len() - stored_files)
    };
    let mut extras = String::new();
    if report.retries > 0 {
        extras.push_str(&format!("; {} retries", report.retries));
    }
    if report.bytes_resumed > 0 {
        extras.push_str(&format!(
            "; {} bytes resumed, not sent again",
            report.bytes_resumed
        ));
    }
    out!(
        "{stored_files} of {} files stored, {stored_bytes} bytes ({}) in {seconds:.2}s ({rate}/s); {verdict}{extras}",
        report.outcomes.len(),
        BinaryBytes(stored_bytes),
    );
    if let Some(err) = &report.connection_error {
        return report_error(err);
    }
    if report.all_stored() {
        Exit::Success
    } else {
        Exit::SomeFilesFailed
    }
}

async fn list(args: ListArgs) -> Exit {
    let entries = match Client::connect(&args.server).await {
        Ok(mut client) => client.list().await,
        Err(err) => Err(err),
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(err) => return report_error(&err),
    };
    if args.json {
        for entry in &entries {
            let line = serde_json::json!({
                "name": entry.name,
                "sent_name": entry.sent_name,
                "size": entry.size,
                "blake3": entry.hash.to_hex(),
                "added_at": entry.added_at,
            });
            out!("{line}");
        }
        return Exit::Success;
    }
    let size_width = entries
        .iter()
        .map(|entry| entry.size.to_string().len())
        .max()
        .unwrap_or(0)
        .max("SIZE".len());
    let time_width = entries
        .iter()
        .map(|entry| entry.added_at.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:>size_width$}  {:<time_width$}  {:<64}  NAME",
        "SIZE", "ADDED", "BLAKE3"
    );
    for entry in &entries {
        out!(
            "{:>size_width$}  {:<time_width$}  {}  {}",
            entry.size,
            entry.added_at,
            entry.hash,
            entry.name
        );
    }
    let total: u64 = entries.iter().map(|entry| entry.size).sum();
    println!(
        "{} files, {total} bytes ({})",
        entries.len(),
        BinaryBytes(total)
    );
    Exit::Success
}
