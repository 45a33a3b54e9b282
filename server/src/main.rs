//! `fts`: parse flags (after the configuration file's settings), set up logging, open the
//! store and catalog, bind, serve.

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use ft_server::{
    auth::Auth,
    catalog::{users::Users, Catalog, CATALOG_FILE},
    config::{Args, Command, Limits, PartialsCommand, UserCommand},
    store::{PartialArea, Store},
    tls::TlsIdentity,
    user_admin::{self, ServerAddress, FIRST_ADMIN},
    Security, ServerState,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

mod config_file;

/// mimalloc instead of glibc's allocator: buffers are allocated on the network thread and
/// freed on the disk threads, which glibc answered with arena growth, trimming and page
/// faults (measured: a sixth of the server's time on 10,000 small files).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Blocking threads beyond one per connection (each upload's writer holds one): commits,
/// catalog reads, resume checks.
const SPARE_BLOCKING_THREADS: usize = 64;

/// Every upload in flight or awaiting its group commit holds a file open; the default soft
/// limit (often 1024) would be reached by one busy client. Raise it to the hard limit.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Descriptor slots reserved at start: enough for a few thousand staged small files and
/// the connections that send them.
const RESERVED_DESCRIPTORS: u64 = 16_384;

/// Grows the descriptor table once, while the process has a single thread. A
/// multi-threaded process that outgrows its table waits for an RCU grace period at every
/// doubling (measured: 5–13 ms stalls of the staging thread at the start of 10,000 small
/// files); a single-threaded one does not wait, and the table never shrinks.
fn reserve_descriptor_table() {
    use rustix::{fs, io, process};
    let limit = process::getrlimit(process::Resource::Nofile);
    let slots = limit
        .current
        .unwrap_or(RESERVED_DESCRIPTORS)
        .min(RESERVED_DESCRIPTORS);
    let Ok(highest) = i32::try_from(slots.saturating_sub(1)) else {
        return;
    };
    if let Ok(root) = fs::open(
        "/",
        fs::OFlags::PATH | fs::OFlags::CLOEXEC,
        fs::Mode::empty(),
    ) {
        // Dropped at once: only the grown table is wanted.
        let _ = io::fcntl_dupfd_cloexec(&root, highest);
    }
}

fn main() -> ExitCode {
    ft_tuning::use_fast_copies();
    let loaded = match config_file::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        Err(config_file::ConfigFileError::Usage(err)) => err.exit(),
        Err(err) => {
            eprintln!("fts: error: {err}");
            return ExitCode::from(2);
        }
    };
    if loaded.args.print_config {
        let mut stdout = std::io::stdout();
        return match stdout.write_all(loaded.to_toml().as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("fts: error: cannot write the configuration: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let args = loaded.args;
    // One crypto provider for the process, chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(Command::User(command)) = &args.command {
        return match user_command(&args, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("fts: error: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Partials { action }) = &args.command {
        return match partials_command(&args, action.as_ref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("fts: error: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    raise_open_file_limit();
    reserve_descriptor_table();
    if args.man {
        use clap::CommandFactory;
        return match clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("fts: error: cannot write the man page: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(args.max_connections as usize + SPARE_BLOCKING_THREADS)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(async_main(args)),
        Err(err) => {
            eprintln!("fts: error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main(args: Args) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Short lines: what happened and to whom, not which module said it.
        .with_target(false)
        .init();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fts: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let dir = args.dir.clone().context("--dir is required")?;
    let store = Store::open(&dir)
        .with_context(|| format!("cannot use {} as the storage directory", dir.display()))?;
    let catalog_path = store.private_dir().join(CATALOG_FILE);
    let catalog = Catalog::open(&catalog_path)
        .with_context(|| format!("cannot open the catalog {}", catalog_path.display()))?;
    let users = Users::open(&catalog_path)
        .with_context(|| format!("cannot open the users in {}", catalog_path.display()))?;
    let tls = tls_identity(&args, &store.private_dir())?;
    upgrade_into_namespaces(&store, &catalog)?;
    // A store without users gets an admin, whose token is shown once, below.
    let first_admin = if users.list().context("cannot read the users")?.is_empty() {
        let token = user_admin::add(&users, FIRST_ADMIN, ft_protocol::Role::Admin)
            .context("cannot create the first admin")?;
        Some(token)
    } else {
        None
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;

    // Scripts and tests read these exact lines: the address first, then the fingerprint.
    let mut stdout = std::io::stdout();
    let mut announcement = format!("listening on {local}\nfingerprint {}\n", tls.fingerprint);
    if let Some(token) = &first_admin {
        let address = ServerAddress::new(local, args.public_host.as_deref(), tls.fingerprint);
        announcement.push_str(&user_admin::announce_new_user(
            FIRST_ADMIN,
            ft_protocol::Role::Admin,
            token,
            &address,
        ));
    }
    stdout
        .write_all(announcement.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    // What an operator wants to know at a glance: what is stored, what waits, what is left.
    let (files, bytes) = catalog
        .totals(ft_server::catalog::Within::All)
        .unwrap_or((0, 0));
    let partials = store.partial_usage(None);
    let free_bytes = store.available_space().ok();
    let anonymous = args
        .anonymous
        .map_or("off".to_owned(), |role| role.to_string());
    tracing::info!(
        dir = %store.root().display(), %local, fingerprint = %tls.fingerprint, files, bytes,
        partial_uploads = partials.files, partial_bytes = partials.bytes, ?free_bytes,
        anonymous, "serving"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    survive_file_size_limit();
    let security = Security {
        tls,
        auth: Auth::new(users, args.anonymous),
    };
    let state = Arc::new(ServerState::new(
        store,
        catalog,
        security,
        Limits::from(&args),
    ));
    ft_server::run(listener, state, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// The operator's certificate (`--cert`, `--key`) or the one kept in the private directory.
fn tls_identity(args: &Args, private_dir: &std::path::Path) -> anyhow::Result<TlsIdentity> {
    let operator = args.cert.as_deref().zip(args.key.as_deref());
    TlsIdentity::load_or_create(private_dir, operator).context("cannot set up TLS")
}

/// A store made before namespaces: its files move into the first admin's namespace, then its
/// catalog rows follow (see `Store::move_into_namespace`; both steps survive interruption).
fn upgrade_into_namespaces(store: &Store, catalog: &Catalog) -> anyhow::Result<()> {
    if !catalog
        .needs_namespace_upgrade()
        .context("cannot read the catalog's version")?
    {
        return Ok(());
    }
    tracing::info!(
        namespace = FIRST_ADMIN,
        "moving the files of an older store into a namespace"
    );
    store
        .move_into_namespace(FIRST_ADMIN)
        .context("cannot move the stored files into the admin's namespace")?;
    catalog
        .finish_namespace_upgrade(FIRST_ADMIN)
        .context("cannot update the catalog's names")?;
    Ok(())
}

/// `fts --dir DIR user ...`: changes the users in the catalog directly, so it works beside a
/// running server (which sees the change at its next check) or without one.
fn user_command(args: &Args, command: &UserCommand) -> anyhow::Result<()> {
    let dir = args.dir.clone().context("--dir is required")?;
    let private = dir.join(ft_server::names::PRIVATE_DIR);
    std::fs::create_dir_all(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    let catalog_path = private.join(CATALOG_FILE);
    let users = Users::open(&catalog_path)
        .with_context(|| format!("cannot open the users in {}", catalog_path.display()))?;
    let mut stdout = std::io::stdout();
    let text = match command {
        UserCommand::Add { name, role } => {
            let token = user_admin::add(&users, name, *role)?;
            let tls = tls_identity(args, &private)?;
            let address =
                ServerAddress::new(args.listen, args.public_host.as_deref(), tls.fingerprint);
            user_admin::announce_new_user(name, *role, &token, &address)
        }
        UserCommand::List => {
            let list = users.list().context("cannot read the users")?;
            format!("{}\n", user_admin::table(&list))
        }
        UserCommand::Remove { name } => {
            users
                .remove(name)
                .map_err(user_admin::UserCommandError::from)?;
            format!(
                "user {name} removed; its files stay in {}/{name}/\n",
                dir.display()
            )
        }
        UserCommand::Token { name } => {
            let token = user_admin::rotate(&users, name)?;
            format!("new token for {name} (the old one no longer works):\n{token}\n")
        }
    };
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// `fts --dir DIR partials ...`: lists or purges the interrupted uploads kept for resume,
/// beside a running server or without one.
fn partials_command(args: &Args, action: Option<&PartialsCommand>) -> anyhow::Result<()> {
    let dir = args.dir.clone().context("--dir is required")?;
    let area = PartialArea::open(&dir)
        .with_context(|| format!("{} holds no uploads kept for resume", dir.display()))?;
    let text = match action.unwrap_or(&PartialsCommand::List) {
        PartialsCommand::List => {
            let now = std::time::SystemTime::now();
            let mut text = format!("{:<16} {:>16} {:>10}  KEY\n", "OWNER", "BYTES", "AGE");
            for partial in area.list() {
                let age = now.duration_since(partial.modified).unwrap_or_default();
                let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
                let owner = partial.owner.as_deref().unwrap_or("-");
                let key = partial.key.to_hex();
                text.push_str(&format!(
                    "{owner:<16} {:>16} {age:>10}  {key}\n",
                    partial.len
                ));
            }
            text
        }
        PartialsCommand::Purge { user, older_than } => {
            let removed = area.purge(user.as_deref(), *older_than);
            format!(
                "removed {} interrupted uploads, {} bytes\n",
                removed.files, removed.bytes
            )
        }
    };
    let mut stdout = std::io::stdout();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// SIGXFSZ: the signal number on Linux for exceeding a file-size limit (`ulimit -f`).
const SIGXFSZ: i32 = 25;

/// By default a file-size limit kills the whole server in the middle of a write. With the
/// signal caught, the write fails with EFBIG instead and only that upload fails, cleanly.
fn survive_file_size_limit() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::from_raw(SIGXFSZ)) {
        Ok(mut stream) => {
            tokio::spawn(async move { while stream.recv().await.is_some() {} });
        }
        Err(err) => tracing::warn!(error = %err, "cannot catch SIGXFSZ"),
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}
