//! The `berth` binary: `berth serve` and the admin subcommands.

mod config;

use anyhow::Context;
use berth_registry::{Registry, Settings, SystemClock};
use clap::{Parser, Subcommand};
use config::Config;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Berth: a self-hosted, ECR-compatible OCI container registry.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Unknown keys are an error.
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding all registry data (blobs, metadata database, upload areas).
    #[arg(long, global = true, env = "BERTH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry server (OCI distribution API).
    Serve {
        /// Address to listen on (`127.0.0.1:5000` by default; port 0 picks a free port).
        #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Print the effective configuration (after file, environment and flags) as TOML.
    Config,
    /// Remove expired upload sessions and orphaned upload areas now (safe while a server runs).
    ExpireUploads,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        cfg.data_dir = d;
    }
    if let Command::Serve { listen: Some(l) } = &cli.command {
        cfg.listen = l.clone();
    }
    init_tracing(&cfg.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { .. } => rt.block_on(serve(cfg)),
        Command::Config => {
            print!("{}", toml::to_string(&cfg)?);
            Ok(())
        }
        Command::ExpireUploads => rt.block_on(async {
            let (reg, meta) = open(&cfg).await?;
            let n = reg
                .expire_uploads()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("removed {n} expired upload(s)");
            meta.close().await;
            Ok(())
        }),
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Open the stores under the data dir and build the registry.
async fn open(cfg: &Config) -> anyhow::Result<(Arc<Registry>, berth_meta::sqlite::SqliteStore)> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let blobs = berth_storage::fs::FsStore::open(&cfg.data_dir)
        .with_context(|| format!("opening blob store in {}", cfg.data_dir.display()))?;
    let meta = berth_meta::sqlite::SqliteStore::open(&cfg.data_dir.join("berth.db"))
        .await
        .context("opening the metadata database")?;
    let settings = Settings {
        namespace: berth_meta::Namespace {
            account_id: cfg.account_id.clone(),
            region: cfg.region.clone(),
        },
        upload_ttl: Duration::from_secs(cfg.upload_ttl_secs),
    };
    let reg = Registry::new(
        Arc::new(meta.clone()),
        Arc::new(blobs),
        Arc::new(SystemClock),
        settings,
    );
    Ok((Arc::new(reg), meta))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let (reg, meta) = open(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "berth listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "berth serving");

    // Upload expiry: once at start (cleans areas a crash left behind), then periodically.
    let janitor = {
        let reg = reg.clone();
        let every = Duration::from_secs((cfg.upload_ttl_secs / 4).clamp(1, 600));
        tokio::spawn(async move {
            loop {
                match reg.expire_uploads().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired upload sessions"),
                    Err(e) => tracing::warn!(error = %e, "upload expiry failed"),
                }
                tokio::time::sleep(every).await;
            }
        })
    };

    let app = berth_server::router(berth_server::AppState {
        registry: reg.clone(),
    });
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(cfg.shutdown_timeout_secs);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!(?grace, "in-flight requests did not finish in time; closing");
    }
    janitor.abort();
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
