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

/// What `send --to` was asked to do.
pub(crate) struct Offering {
    /// The recipients.
    pub(crate) to: Vec<String>,
    /// How long they have to answer.
    pub(crate) timeout: Duration,
    /// Whether those not online get the files in their inbox on the server.
    pub(crate) leave: bool,
    /// `--bwlimit`: bytes a second at most.
    pub(crate) bwlimit: Option<u64>,
}

/// `send --to`: offers the paths to the users, sends what they accept (and, with `--leave`,
/// leaves the files for those not online), and reports per recipient.
pub(crate) async fn send_to(
    session: &mut Session,
    paths: &[std::path::PathBuf],
    offering: Offering,
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
    let Offering {
        to,
        timeout,
        leave,
        bwlimit,
    } = offering;
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
    let sending = async {
        let mut report =
            relay::send_to_users(session, plan, to, timeout, bwlimit, &on_event).await?;
        let away: Vec<String> = report
            .recipients
            .iter()
            .filter(|r| matches!(r.outcome, RecipientOutcome::NotOnline))
            .map(|r| r.user.clone())
            .collect();
        if !leave || away.is_empty() {
            return Ok((report, Vec::new()));
        }
        if !style.json {
            err!(
                "ftc: {} not online; leaving the files in the inbox on the server",
                away.join(", ")
            );
        }
        let files = report.files.clone();
        let left = relay::leave_for_users(session, files, away.clone(), bwlimit, &on_event).await?;
        report.bytes_sent += left.bytes_sent;
        report.elapsed += left.elapsed;
        for recipient in left.recipients {
            if let Some(slot) = report
                .recipients
                .iter_mut()
                .find(|r| r.user == recipient.user)
            {
                *slot = recipient;
            }
        }
        Ok::<_, ft_client::ClientError>((report, away))
    };
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
        Ok((report, left)) => offer_report(&report, &left, style.json),
        Err(err) => {
            session.reset();
            report_error(err, style.json)
        }
    }
}

/// Prints what each recipient did (`left`: those whose files went to their inbox); the
/// exit status.
fn offer_report(report: &OfferReport, left: &[String], json: bool) -> Exit {
    let mut all_ok = true;
    for recipient in &report.recipients {
        let in_inbox = left.contains(&recipient.user);
        let outcome = match &recipient.outcome {
            RecipientOutcome::Accepted(_) if in_inbox => "left-in-inbox",
            RecipientOutcome::Accepted(_) => "accepted",
            RecipientOutcome::Declined => "declined",
            RecipientOutcome::TimedOut => "timed-out",
            RecipientOutcome::NotOnline => "not-online",
            RecipientOutcome::Refused { code, .. } => code.as_str(),
        };
        let complete = matches!(recipient.outcome, RecipientOutcome::Accepted(_))
            && recipient.stopped.is_none()
            && recipient.failed.is_empty()
            && recipient.saved.len() == report.files.len();
        all_ok &= complete;
        if json {
            let key = if in_inbox { "left" } else { "saved" };
            emit(&json!({
                "event": "recipient", "user": recipient.user, "outcome": outcome,
                key: recipient.saved.iter().map(|(name, path)| json!({"name": name, "path": path})).collect::<Vec<_>>(),
                "failed": recipient.failed.iter().map(|(name, why)| json!({"name": name, "message": why})).collect::<Vec<_>>(),
                "stopped": recipient.stopped, "ok": complete,
            }));
            continue;
        }
        match &recipient.outcome {
            RecipientOutcome::Accepted(_) => {
                for (name, path) in &recipient.saved {
                    if in_inbox {
                        out!("{}: {name} {path} (verified)", recipient.user);
                    } else {
                        out!("{}: saved {name} as {path} (verified)", recipient.user);
                    }
                }
                for (name, why) in &recipient.failed {
                    err!("ftc: {}: not saved: {name}: {why}", recipient.user);
                }
                if let Some(why) = &recipient.stopped {
                    err!("ftc: {}: stopped: {why}", recipient.user);
                }
                let what = if in_inbox {
                    "left in the inbox (delivered when they listen)"
                } else {
                    "saved and verified"
                };
                out!(
                    "{}: {} of {} files {what}",
                    recipient.user,
                    recipient.saved.len(),
                    report.files.len()
                );
            }
            RecipientOutcome::Refused { message, .. } => {
                err!("ftc: {}: nothing left: {message}", recipient.user);
            }
            RecipientOutcome::NotOnline => err!(
                "ftc: {}: not-online (--leave keeps the files on the server for them)",
                recipient.user
            ),
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
            "{} sent {}in {:.2}s; {}",
            BinaryBytes(report.bytes_sent),
            if left.is_empty() { "once " } else { "" },
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

/// `inbox`: what other users left for this one.
pub(crate) async fn inbox(session: &mut Session, json: bool) -> Exit {
    let listed = match session.client().await {
        Ok(client) => client.inbox().await,
        Err(err) => Err(err),
    };
    let list = match listed {
        Ok(list) => list,
        Err(err) => {
            session.reset();
            return report_error(err, json);
        }
    };
    for file in &list.files {
        if json {
            emit(&json!({
                "event": "inbox_file", "from": file.from, "name": file.name, "size": file.size,
                "left_at": file.left_at, "expires_at": file.expires_at,
            }));
        } else {
            out!(
                "{:>10}  {:<16}  {}  from {}  (until {})",
                BinaryBytes(file.size).to_string(),
                crate::listing::show_time(&file.left_at, false),
                file.name,
                file.from,
                crate::listing::show_time(&file.expires_at, false),
            );
        }
    }
    if json {
        emit(&json!({
            "event": "summary", "files": list.total_files, "bytes": list.used,
            "quota": list.quota,
        }));
    } else {
        let shown = list.files.len() as u64;
        if shown < list.total_files {
            out!("... and {} more", list.total_files - shown);
        }
        out!(
            "{} {} waiting, {} of {}; `ftc listen` receives them",
            list.total_files,
            if list.total_files == 1 {
                "file"
            } else {
                "files"
            },
            BinaryBytes(list.used),
            BinaryBytes(list.quota)
        );
    }
    Exit::Success
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
