//! `fts`: parse flags, set up logging, open the store and catalog, bind, serve.

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context;
use clap::Parser;
use ft_server::{
    catalog::{Catalog, CATALOG_FILE},
    config::{Args, Limits},
    store::Store,
    ServerState,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

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
    let args = Args::parse();
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
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;

    // Scripts and tests read this exact line to learn the port.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {local}").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    tracing::info!(dir = %store.root().display(), %local, "serving");

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    survive_file_size_limit();
    let state = Arc::new(ServerState::new(store, catalog, Limits::from(&args)));
    ft_server::run(listener, state, shutdown).await;
    tracing::info!("stopped");
    Ok(())
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
