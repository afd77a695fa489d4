//! The `pods` binary: the server, and the operator's and plugin author's CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use pods::api::{self, AppState};
use pods::config::Settings;
use pods::conformance;
use pods::domain::Role;
use pods::plugins::{Plugin, Registry, Runtime};
use pods::vault::{Binding, Sealed, Vault};

#[derive(Parser)]
#[command(
    name = "pods",
    version,
    about = "Runs LLM pods; providers are sandboxed WebAssembly plugins."
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "PODS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// `all`: API and workers; `api`: the API only (queued executions wait for a worker node);
        /// `worker`: workers, with only /health and /metrics served.
        #[arg(long, env = "PODS_ROLE", value_enum, default_value_t = NodeRole::All)]
        role: NodeRole,
    },
    /// Mint a bearer token for a user (local use and scripts).
    Token {
        /// User id or email.
        #[arg(long)]
        user: String,
        /// Lifetime in hours; default and most: the server's token lifetime
        /// (`PODS_TOKEN_TTL_HOURS`, 24).
        #[arg(long)]
        ttl_hours: Option<u64>,
    },
    /// Users and workspaces.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Provider keys at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect and check plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NodeRole {
    All,
    Api,
    Worker,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user (and optionally a workspace they own); prints their id and a token as JSON.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        /// A system admin may change prices.
        #[arg(long)]
        admin: bool,
        /// Also create a workspace of this name, owned by the user.
        #[arg(long)]
        workspace: Option<String>,
        /// Read a password for signing in (`POST /api/v1/auth/login`, the console) from the first
        /// line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (read from the first line of stdin), or with `--clear` remove it.
    SetPassword {
        /// User id or email.
        #[arg(long)]
        user: String,
        #[arg(long)]
        clear: bool,
    },
    /// Add a user to a workspace, or change their role (viewer, member, admin, owner).
    AddMember {
        #[arg(long)]
        workspace: String,
        /// User id or email.
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Disable a user: every token of theirs fails from now on, on every node. (Their open
    /// WebSockets close at once when done through the API, within a minute from here.)
    DisableUser {
        /// User id or email.
        #[arg(long)]
        user: String,
    },
    /// Enable a disabled user again.
    EnableUser {
        /// User id or email.
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored provider key under the current master key. With `--new` (for the
    /// generated keyring file), first add a fresh master key to the file and make it current.
    Rotate {
        #[arg(long)]
        new: bool,
    },
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
    /// Write a new provider plugin crate (OpenAI-compatible to start with) from the template.
    New {
        /// The provider id, e.g. `mistral`: `[a-z0-9][a-z0-9-]*`.
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// The provider's API base URL, under which it serves `/chat/completions`.
        #[arg(long)]
        base_url: String,
        /// A model the provider serves (repeat for more).
        #[arg(long = "model", required = true)]
        models: Vec<String>,
        /// Where to write the crate (default: `./ID`); must not exist.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Held to the end: dropping it flushes the traces still buffered.
    let _telemetry = match pods::telemetry::init() {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let settings = cli.settings;
    match cli.command {
        Command::Serve { listen, role } => {
            let started = Instant::now();
            let node = settings.node().await?;
            let tokens = settings.tokens()?;
            tracing::info!(
                elapsed = ?started.elapsed(),
                database = ?node.store.backend(),
                plugins = ?node.plugins.manifests().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
                "ready"
            );
            pods::plugins::watch::spawn(
                node.plugins.clone(),
                settings.plugin_dir.clone(),
                std::time::Duration::from_millis(250),
            );
            let workers = (role != NodeRole::Api)
                .then(|| pods::worker::spawn(node.scheduling(), settings.worker_config()));
            let state = AppState::new(node, tokens);
            if let Some(address) = settings.metrics_listen {
                // Metrics without a token, on an address only the network's scraper reaches.
                let metrics = api::metrics_router(state.clone());
                tokio::spawn(async move {
                    if let Err(e) = pods::server::serve(address, metrics).await {
                        tracing::error!(error = %e, %address, "the metrics listener stopped");
                    }
                });
            }
            let app = match role {
                NodeRole::Worker => api::operator_router(state),
                _ => api::router(state, settings.max_body_bytes),
            };
            pods::server::serve(listen, app).await?;
            if let Some(workers) = workers {
                // Let running executions finish (and be saved) before the process ends.
                workers
                    .shutdown(Duration::from_secs(settings.shutdown_grace_secs))
                    .await;
            }
        }
        Command::Token { user, ttl_hours } => {
            let store = settings.store().await?;
            let user = store
                .user(&user)
                .await
                .with_context(|| format!("user {user:?}"))?;
            let tokens = settings.tokens()?;
            let ttl = ttl_hours.map_or(tokens.max_ttl(), |h| Duration::from_secs(h * 3600));
            println!("{}", tokens.mint(&user.id, ttl)?);
        }
        Command::Admin(AdminCommand::CreateUser {
            email,
            name,
            admin,
            workspace,
            password_stdin,
        }) => {
            let hash = password_stdin
                .then(|| password_from_stdin().and_then(hash_password))
                .transpose()?;
            let store = settings.store().await?;
            let user = store.create_user(&email, &name, admin).await?;
            if let Some(hash) = &hash {
                store.set_password_hash(&user.id, Some(hash)).await?;
            }
            let workspace = match workspace {
                Some(name) => Some(store.create_workspace(&name, &user.id).await?.id),
                None => None,
            };
            let tokens = settings.tokens()?;
            let token = tokens.mint(&user.id, tokens.max_ttl())?;
            println!(
                "{}",
                serde_json::json!({"userId": user.id, "email": user.email, "workspaceId": workspace, "token": token})
            );
        }
        Command::Admin(AdminCommand::SetPassword { user, clear }) => {
            let hash = match clear {
                true => None,
                false => Some(hash_password(password_from_stdin()?)?),
            };
            let store = settings.store().await?;
            let user = store
                .set_password_hash(&user, hash.as_deref())
                .await
                .with_context(|| format!("user {user:?}"))?;
            let what = if clear { "removed" } else { "set" };
            println!(
                "{}",
                serde_json::json!({"userId": user.id, "email": user.email, "password": what})
            );
        }
        Command::Admin(AdminCommand::AddMember {
            workspace,
            user,
            role,
        }) => {
            let store = settings.store().await?;
            let role = Role::parse(&role)
                .with_context(|| format!("role {role:?}: viewer, member, admin or owner"))?;
            let user = store
                .user(&user)
                .await
                .with_context(|| format!("user {user:?}"))?;
            store.set_member(&workspace, &user.id, role).await?;
        }
        Command::Admin(AdminCommand::DisableUser { user }) => {
            set_disabled(&settings, &user, true).await?;
        }
        Command::Admin(AdminCommand::EnableUser { user }) => {
            set_disabled(&settings, &user, false).await?;
        }
        Command::Keys(KeysCommand::Rotate { new }) => rotate_keys(&settings, new).await?,
        Command::Plugin(command) => return plugin_command(&settings, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Disables or enables a user, and records it in the audit log as the operator's doing.
async fn set_disabled(settings: &Settings, user: &str, disabled: bool) -> Result<()> {
    let store = settings.store().await?;
    let user = store
        .set_user_disabled(user, disabled)
        .await
        .with_context(|| format!("user {user:?}"))?;
    store
        .record_audit(pods::store::NewAuditEntry {
            action: if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            target: user.id.clone(),
            detail: serde_json::json!({"email": user.email, "via": "cli"}),
            ..Default::default()
        })
        .await?;
    println!(
        "{}",
        serde_json::json!({"userId": user.id, "email": user.email, "disabled": user.disabled})
    );
    Ok(())
}

async fn rotate_keys(settings: &Settings, new: bool) -> Result<()> {
    if new {
        if std::env::var("PODS_MASTER_KEY").is_ok() {
            bail!(
                "--new rotates the keyring file; with PODS_MASTER_KEY set, set a new key and move the old one to PODS_PREVIOUS_MASTER_KEYS instead"
            );
        }
        let path = settings.keyring_path();
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let ring = Vault::parse_keyring(&old)?;
        let next = (1..)
            .map(|n| format!("k{n}"))
            .find(|id| !ring.iter().any(|(k, _)| k == id))
            .unwrap_or_default();
        pods::vault::write_private(&path, &format!("{next}:{}\n{old}", Vault::generate_key()))?;
    }
    let vault = settings.vault()?;
    let store = settings.store().await?;
    let mut rotated = 0;
    for key in store.all_keys().await? {
        if key.master_key_id == vault.current_key_id() {
            continue;
        }
        let binding = Binding {
            workspace_id: &key.workspace_id,
            provider: &key.provider,
            key_id: &key.id,
        };
        let secret = vault.open(
            &binding,
            &Sealed {
                ciphertext: key.ciphertext.clone(),
                nonce: key.nonce.clone(),
                master_key_id: key.master_key_id.clone(),
            },
        )?;
        let sealed = vault.seal(&binding, secret.expose());
        store
            .reencrypt_key(
                &key.id,
                &sealed.ciphertext,
                &sealed.nonce,
                &sealed.master_key_id,
            )
            .await?;
        rotated += 1;
    }
    println!(
        "re-encrypted {rotated} provider key(s) under master key {}",
        vault.current_key_id()
    );
    Ok(())
}

async fn plugin_command(settings: &Settings, command: PluginCommand) -> Result<ExitCode> {
    // Only the commands that load plugins start the sandbox.
    let runtime = || Runtime::new(settings.runtime_config());
    match command {
        PluginCommand::New {
            id,
            name,
            base_url,
            models,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&id));
            let plugin = pods::scaffold::NewPlugin {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                base_url,
                models,
            };
            pods::scaffold::write(&plugin, &dir)?;
            println!(
                "wrote {}: cd there, `cargo build --release`, then `pods plugin check target/wasm32-wasip2/release/{}.wasm --vectors vectors`",
                dir.display(),
                plugin.id.replace('-', "_")
            );
        }
        PluginCommand::List => {
            let registry =
                Registry::with_builtins(std::sync::Arc::new(runtime()?), Default::default())
                    .await?;
            for m in registry.manifests() {
                println!("{}\t{}\t{}", m.id, m.version, m.default_base_url);
            }
        }
        PluginCommand::Inspect { plugin } => {
            // Kept alive while the plugin runs: it drives the deadlines.
            let runtime = runtime()?;
            let plugin = load(&runtime, &plugin).await?;
            println!("{}", serde_json::to_string_pretty(plugin.manifest())?);
        }
        PluginCommand::Check { plugin, vectors } => {
            // Kept alive while the plugin runs: it drives the deadlines.
            let runtime = runtime()?;
            let plugin = load(&runtime, &plugin).await?;
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
            let outcomes = conformance::run(&plugin, &vectors).await;
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
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A plugin from a `.wasm` file, or a built-in one by id.
async fn load(runtime: &Runtime, name: &str) -> Result<Plugin> {
    let path = PathBuf::from(name);
    if path.exists() {
        let wasm = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        return runtime
            .load(&wasm)
            .await
            .with_context(|| format!("load {}", path.display()));
    }
    let Some((_, wasm)) = pods::plugins::BUILTIN.iter().find(|(id, _)| *id == name) else {
        bail!(
            "{name}: no such file, and not a built-in plugin (openai, anthropic, gemini, json-field)"
        );
    };
    Ok(runtime.load(wasm).await?)
}

/// The first line of stdin, without its line ending (a password is never an argument: arguments
/// show in `ps` and shell history).
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("read the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn hash_password(password: String) -> anyhow::Result<String> {
    Ok(pods::auth::hash_password(&password)?)
}
