//! The `hepflow` command line: `run` (the default), `validate`, `replay`.

use clap::{Args, Parser, Subcommand};
use hepflow::config::{self, LogFormat, Overrides};
use hepflow::{app, replay, sinks};
use std::path::PathBuf;
use std::process::ExitCode;

/// hepflow: a HEP switch/router for VoIP monitoring.
#[derive(Parser, Debug)]
#[command(name = "hepflow", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
struct Common {
    /// Configuration file (TOML). Without it, the embedded default
    /// (config/hepflow.toml) is used.
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override api.bind.
    #[arg(long, global = true, value_name = "ADDR")]
    api_bind: Option<String>,
    /// Override node.name.
    #[arg(long, global = true, value_name = "NAME")]
    node_name: Option<String>,
    /// Override log.level.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Receive HEP and route it to the sinks (the default).
    Run,
    /// Check a configuration, report every error, exit non-zero if any.
    Validate,
    /// Send the HEP messages of a pcap/pcapng file, or its plain SIP
    /// packets wrapped into HEPv3, to a udp:// or tcp:// HEP collector.
    Replay(replay::ReplayArgs),
}

fn overrides(c: &Common) -> Overrides {
    Overrides {
        api_bind: c.api_bind.clone(),
        node_name: c.node_name.clone(),
        log_level: c.log_level.clone(),
    }
}

fn init_logging(cfg: &config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cfg.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    hepflow::malloc_tuning::apply();
    let cli = Cli::parse();
    let factories = sinks::factories();
    let loaded = config::load(
        cli.common.config.as_deref(),
        &overrides(&cli.common),
        &factories,
    )
    .and_then(|cfg| {
        // The files the config names (TLS certificates) load.
        let problems = hepflow::ingest::check_files(&cfg);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(config::ConfigErrors(problems))
        }
    });
    let source = cli.common.config.as_ref().map_or_else(
        || "the embedded default config".to_string(),
        |p| p.display().to_string(),
    );
    match cli.command.unwrap_or(Command::Run) {
        // Needs no configuration: `loaded` is not looked at.
        Command::Replay(args) => match replay::run(&args, &mut std::io::stdout().lock()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hepflow replay: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Validate => match loaded {
            Ok(_) => {
                println!("{source}: OK");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{source}: {} error(s)", errors.0.len());
                for e in &errors.0 {
                    eprintln!("  - {e}");
                }
                ExitCode::from(2)
            }
        },
        Command::Run => {
            let cfg = match loaded {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!(
                        "{source}: {} error(s); hepflow not started:",
                        errors.0.len()
                    );
                    for e in &errors.0 {
                        eprintln!("  - {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            init_logging(&cfg.log);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("hepflow")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(app::run(cfg, app::shutdown_signal())) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("hepflow: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
