//! `session-service serve | migrate up|down|status | config`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use session_service::{
    app::{Application, store_settings},
    config::Settings,
    store::Store,
    telemetry::logging,
};

#[derive(Parser)]
#[command(version, about = "Game sessions with optimistic concurrency over gRPC")]
struct Cli {
    /// Settings file (TOML, or YAML by extension); environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (applies pending migrations first unless disabled).
    Serve {
        /// gRPC address, overriding server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Allow auth.mode "none" on a non-loopback address (development only).
        #[arg(long)]
        insecure_allow_no_auth: bool,
    },
    /// Apply, roll back or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the effective configuration, secrets redacted.
    Config,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply pending migrations (all, or --steps).
    Up {
        #[arg(long)]
        steps: Option<u32>,
    },
    /// Roll back the last --steps migrations (default 1).
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut figment = Settings::figment(cli.config.as_deref());
    if let Command::Serve {
        listen,
        insecure_allow_no_auth,
    } = &cli.command
    {
        if let Some(listen) = listen {
            figment = figment.merge(("server.listen", listen.to_string()));
        }
        if *insecure_allow_no_auth {
            figment = figment.merge(("server.insecure_allow_no_auth", true));
        }
    }
    let settings = match Settings::from_figment(figment) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = logging::init(&settings.log);
    match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve { .. } => {
            let app = Application::build(settings).await?;
            app.run_until(shutdown_signal()).await?;
        }
        Command::Migrate { action } => migrate(action, &settings).await?,
        Command::Config => print!("{}", toml::to_string_pretty(&settings.redacted())?),
    }
    Ok(())
}

async fn migrate(action: MigrateAction, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::connect(&store_settings(settings)).await?;
    match action {
        MigrateAction::Up { steps } => store.migrate_up(steps).await?,
        MigrateAction::Down { steps } => store.migrate_down(steps).await?,
        MigrateAction::Status => {}
    }
    for m in store.migration_status().await? {
        println!("{} {}", if m.applied { "applied" } else { "pending" }, m.name);
    }
    store.close().await;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (orchestrators).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
