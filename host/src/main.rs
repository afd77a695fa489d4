//! The `pods` binary: the server and the operator's and plugin author's CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use pods::conformance;
use pods::plugins::{Limits, Plugin, Registry, Runtime, RuntimeConfig};
use pods::server::{self, AppState};

#[derive(Parser)]
#[command(
    name = "pods",
    version,
    about = "Runs LLM pods; providers are sandboxed WebAssembly plugins."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Folder for the server's data (database, compiled-plugin cache).
    #[arg(long, env = "PODS_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// Wall-clock budget of one call into a plugin, in milliseconds.
    #[arg(
        long,
        env = "PODS_PLUGIN_DEADLINE_MS",
        default_value_t = 1000,
        global = true
    )]
    plugin_deadline_ms: u64,
    /// Most linear memory one plugin instance may use, in MiB.
    #[arg(
        long,
        env = "PODS_PLUGIN_MEMORY_MB",
        default_value_t = 64,
        global = true
    )]
    plugin_memory_mb: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "PODS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Inspect and check plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Print a plugin's manifest as JSON.
    Inspect {
        /// A `.wasm` component, or the id of a built-in plugin.
        plugin: String,
    },
    /// Run conformance vectors against a plugin and print pass/fail per vector.
    Check {
        /// A `.wasm` component, or the id of a built-in plugin.
        plugin: String,
        /// A folder of vectors (`NAME.json` + `NAME.body`). Default: the built-in vectors for the
        /// plugin's provider id.
        #[arg(long)]
        vectors: Option<PathBuf>,
    },
    /// List the built-in plugins.
    List,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = RuntimeConfig {
        limits: Limits {
            deadline: Duration::from_millis(cli.plugin_deadline_ms),
            memory_cap: cli.plugin_memory_mb << 20,
        },
        cache_dir: Some(cli.data_dir.join("wasm-cache")),
        ..RuntimeConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    match cli.command {
        Command::Serve { listen } => {
            std::fs::create_dir_all(&cli.data_dir)
                .with_context(|| format!("create {}", cli.data_dir.display()))?;
            let plugins = Runtime::new(config)?;
            let started = Instant::now();
            let registry = Registry::with_builtins(&plugins)?;
            tracing::info!(elapsed = ?started.elapsed(), plugins = ?registry.manifests().iter().map(|m| &m.id).collect::<Vec<_>>(), "plugins loaded");
            runtime.block_on(server::serve(listen, AppState { plugins: registry }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::List) => {
            let plugins = Runtime::new(config)?;
            for m in Registry::with_builtins(&plugins)?.manifests() {
                println!("{}\t{}\t{}", m.id, m.version, m.default_base_url);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Inspect { plugin }) => {
            let plugins = Runtime::new(config)?;
            let plugin = load(&plugins, &plugin)?;
            println!("{}", serde_json::to_string_pretty(plugin.manifest())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Check { plugin, vectors }) => {
            let plugins = Runtime::new(config)?;
            let plugin = load(&plugins, &plugin)?;
            let m = plugin.manifest();
            println!(
                "plugin {} {} (pods:provider@{}): manifest ok",
                m.id, m.version, m.api_version
            );
            let vectors = match &vectors {
                Some(dir) => conformance::load_dir(dir).map_err(anyhow::Error::msg)?,
                None => conformance::builtin(&m.id).map_err(anyhow::Error::msg)?,
            };
            if vectors.is_empty() {
                bail!("no vectors for provider {:?}: pass --vectors DIR", m.id);
            }
            let outcomes = runtime.block_on(conformance::run(&plugin, &vectors));
            let mut failed = 0;
            for (outcome, vector) in outcomes.iter().zip(&vectors) {
                match &outcome.result {
                    Ok(()) => println!("PASS {} — {}", outcome.name, vector.spec.description),
                    Err(why) => {
                        failed += 1;
                        println!("FAIL {}: {why}", outcome.name);
                    }
                }
            }
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// A plugin from a `.wasm` file, or a built-in one by id.
fn load(runtime: &Runtime, name: &str) -> Result<Plugin> {
    let path = PathBuf::from(name);
    if path.exists() {
        let wasm = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        return runtime
            .load(&wasm)
            .with_context(|| format!("load {}", path.display()));
    }
    let Some((_, wasm)) = pods::plugins::BUILTIN.iter().find(|(id, _)| *id == name) else {
        bail!("{name}: no such file, and not a built-in plugin (openai, anthropic, gemini)");
    };
    Ok(runtime.load(wasm)?)
}
