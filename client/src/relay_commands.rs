//! The relay's commands: `ftc send --to`, `ftc listen` and `ftc users`, and what they print.

use std::{io::IsTerminal as _, time::Duration};

use anyhow::anyhow;
use ft_client::{
    plan_uploads,
    relay::{self, Incoming, ListenEvent, ListenOptions, OfferChoice, OfferReport},
    Session,
};
use ft_protocol::relay::RecipientOutcome;
use indicatif::BinaryBytes;
use serde_json::json;

use crate::{
    commands::Style,
    exit::Exit,
    output::{emit, out, report_error, EventOutput},
    terminal::err,
};

/// `send --to`: offers the paths to the users, sends what they accept, and reports per
/// recipient.
pub(crate) async fn send_to(
    session: &mut Session,
    paths: &[std::path::PathBuf],
    to: Vec<String>,
    timeout: Duration,
    style: Style,
) -> Exit {
    if paths.is_empty() {
        return report_error(anyhow!("no files or folders given"), style.json);
    }
    let plan = match plan_uploads(paths, true) {
        Ok(plan) => plan,
        Err(err) => return report_error(err, style.json),
    };
    if plan.files.is_empty() {
        return report_error(anyhow!("nothing to send: no files"), style.json);
    }
    if !style.json {
        err!(
            "ftc: offering {} {} to {}; waiting for an answer (up to {}s)",
            plan.files.len(),
            if plan.files.len() == 1 {
                "file"
            } else {
                "files"
            },
            to.join(", "),
            timeout.as_secs()
        );
    }
    let events = EventOutput::new(style.json, style.bars, style.verbosity, false);
    let on_event = |event| events.handle(&event);
    let sending = relay::send_to_users(session, plan, to, timeout, &on_event);
    let result = tokio::select! {
        result = sending => result,
        _ = tokio::signal::ctrl_c() => {
            events.finish();
            err!("ftc: interrupted: the recipients were told; their partial files stay for a resume");
            return Exit::Interrupted;
        }
    };
    events.finish();
    match result {
        Ok(report) => offer_report(&report, style.json),
        Err(err) => {
            session.reset();
            report_error(err, style.json)
        }
    }
}

/// Prints what each recipient did; the exit status.
fn offer_report(report: &OfferReport, json: bool) -> Exit {
    let mut all_ok = true;
    for recipient in &report.recipients {
        let outcome = match &recipient.outcome {
            RecipientOutcome::Accepted(_) => "accepted",
            RecipientOutcome::Declined => "declined",
            RecipientOutcome::TimedOut => "timed-out",
            RecipientOutcome::NotOnline => "not-online",
        };
        let complete = matches!(recipient.outcome, RecipientOutcome::Accepted(_))
            && recipient.stopped.is_none()
            && recipient.failed.is_empty()
            && recipient.saved.len() == report.files.len();
        all_ok &= complete;
        if json {
            emit(&json!({
                "event": "recipient", "user": recipient.user, "outcome": outcome,
                "saved": recipient.saved.iter().map(|(name, path)| json!({"name": name, "path": path})).collect::<Vec<_>>(),
                "failed": recipient.failed.iter().map(|(name, why)| json!({"name": name, "message": why})).collect::<Vec<_>>(),
                "stopped": recipient.stopped, "ok": complete,
            }));
            continue;
        }
        match &recipient.outcome {
            RecipientOutcome::Accepted(_) => {
                for (name, path) in &recipient.saved {
                    out!("{}: saved {name} as {path} (verified)", recipient.user);
                }
                for (name, why) in &recipient.failed {
                    err!("ftc: {}: not saved: {name}: {why}", recipient.user);
                }
                if let Some(why) = &recipient.stopped {
                    err!("ftc: {}: stopped: {why}", recipient.user);
                }
                out!(
                    "{}: {} of {} files saved and verified",
                    recipient.user,
                    recipient.saved.len(),
                    report.files.len()
                );
            }
            _ => err!("ftc: {}: {outcome}", recipient.user),
        }
    }
    if json {
        emit(&json!({
            "event": "summary", "files": report.files.len(), "bytes_sent": report.bytes_sent,
            "elapsed_ms": report.elapsed.as_millis() as u64, "ok": all_ok,
        }));
    } else {
        out!(
            "{} sent once in {:.2}s; {}",
            BinaryBytes(report.bytes_sent),
            report.elapsed.as_secs_f64(),
            if all_ok {
                "every recipient verified every file (BLAKE3)"
            } else {
                "not every recipient has every file"
            }
        );
    }
    if all_ok {
        Exit::Success
    } else {
        Exit::SomeFilesFailed
    }
}

/// `listen`: online until Ctrl-C (or one offer, with `once`).
pub(crate) async fn listen(
    session: &mut Session,
    options: ListenOptions,
    accept_from: Vec<String>,
    yes: bool,
    json: bool,
) -> Exit {
    let interactive = std::io::stdin().is_terminal() && !json;
    let mut decide = |incoming: Incoming<'_>| -> OfferChoice {
        let total: u64 = incoming.files.iter().map(|f| f.size).sum();
        let names: Vec<&str> = incoming.files.iter().map(|f| f.name.as_str()).collect();
        if json {
            emit(&json!({
                "event": "offered", "from": incoming.from, "files": names, "bytes": total,
            }));
        } else {
            err!(
                "ftc: {} offers {} {} ({}): {}",
                incoming.from,
                names.len(),
                if names.len() == 1 { "file" } else { "files" },
                BinaryBytes(total),
                shorten_list(&names)
            );
        }
        let everything = OfferChoice::Accept(vec![true; incoming.files.len()]);
        if yes || accept_from.iter().any(|user| user == incoming.from) {
            return everything;
        }
        if !interactive {
            err!(
                "ftc: declined (not a terminal: pass --yes or --accept-from {})",
                incoming.from
            );
            return OfferChoice::Decline;
        }
        match ask("accept? [a]ll / [n]one / [c]hoose: ").as_str() {
            "a" | "all" | "y" | "yes" => everything,
            "c" | "choose" => OfferChoice::Accept(
                incoming
                    .files
                    .iter()
                    .map(|file| {
                        let question =
                            format!("  {} ({})? [y/N] ", file.name, BinaryBytes(file.size));
                        matches!(ask(&question).as_str(), "y" | "yes")
                    })
                    .collect(),
            ),
            _ => OfferChoice::Decline,
        }
    };
    let on_event = |event: ListenEvent| print_listen_event(event, json);
    let listening = relay::listen(session, &options, &mut decide, &on_event);
    let result = tokio::select! {
        result = listening => result,
        _ = tokio::signal::ctrl_c() => {
            if !json {
                err!("ftc: stopped listening");
            }
            return Exit::Interrupted;
        }
    };
    match result {
        Ok(()) => Exit::Success,
        Err(err) => {
            session.reset();
            report_error(err, json)
        }
    }
}

/// One line per listener event.
fn print_listen_event(event: ListenEvent, json: bool) {
    match event {
        ListenEvent::Listening(users) => {
            if json {
                emit(
                    &json!({"event": "listening", "online": users.iter().map(|u| &u.name).collect::<Vec<_>>()}),
                );
            } else {
                let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
                err!("ftc: listening; online now: {}", names.join(", "));
            }
        }
        ListenEvent::Presence(presence) => {
            if json {
                emit(&json!({
                    "event": "presence", "user": presence.user.name, "online": presence.online,
                    "listening": presence.user.listening,
                }));
            } else {
                let what = match (presence.online, presence.user.listening) {
                    (false, _) => "went offline",
                    (true, true) => "is listening",
                    (true, false) => "is online",
                };
                err!("ftc: {} {what}", presence.user.name);
            }
        }
        ListenEvent::Declined { from, files } => {
            if json {
                emit(&json!({"event": "declined", "from": from, "files": files}));
            } else {
                err!("ftc: declined the offer from {from}");
            }
        }
        ListenEvent::Saved {
            from,
            name,
            path,
            size,
            hash,
        } => {
            if json {
                emit(&json!({
                    "event": "file_done", "from": from, "name": name,
                    "path": path.display().to_string(), "size": size, "blake3": hash.to_hex(),
                }));
            } else {
                out!(
                    "received {name} from {from} as {} ({size} bytes, blake3 {hash})",
                    path.display()
                );
            }
        }
        ListenEvent::Failed {
            from,
            name,
            message,
        } => {
            if json {
                emit(
                    &json!({"event": "file_failed", "from": from, "name": name, "message": message}),
                );
            } else {
                err!("ftc: not saved: {name} from {from}: {message}");
            }
        }
        ListenEvent::Cancelled { from, message } => {
            if json {
                emit(&json!({"event": "cancelled", "from": from, "message": message}));
            } else {
                err!("ftc: the offer from {from} stopped: {message} (partial files kept for a resume)");
            }
        }
    }
}

/// `users`: who is online.
pub(crate) async fn users(session: &mut Session, json: bool) -> Exit {
    let listed = match session.client().await {
        Ok(client) => client.users().await,
        Err(err) => Err(err),
    };
    match listed {
        Ok(users) => {
            for user in &users {
                if json {
                    emit(
                        &json!({"event": "user", "name": user.name, "since": user.since, "listening": user.listening}),
                    );
                } else {
                    let since = crate::listing::show_time(&user.since, false);
                    let listening = if user.listening { "listening" } else { "" };
                    out!("{:<24}  online since {since}  {listening}", user.name);
                }
            }
            if json {
                emit(&json!({"event": "summary", "users": users.len()}));
            }
            Exit::Success
        }
        Err(err) => {
            session.reset();
            report_error(err, json)
        }
    }
}

/// Asks on the terminal; the answer, trimmed and lower-case ("" on end of input).
fn ask(question: &str) -> String {
    use std::io::{BufRead as _, Write as _};
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer.trim().to_lowercase()
}

/// The first few names, then "and N more".
fn shorten_list(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}
