//! The `portcullis` command line.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use portcullis::app::{build_server, RunOptions};
use portcullis::auth::passwords::{hash_blocking, PasswordSettings};
use portcullis::auth::{TokenKind, TokenManager, TokenSpec};
use portcullis::config;
use portcullis::ids::new_id;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A reverse-proxy auth gateway: verifies JWTs, enforces the roles and permissions in
/// gateway.yaml, and forwards what it admits.
#[derive(Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (refuses to start on any config problem).
    Run {
        /// The config file.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Take over the listening sockets of a running instance (zero-downtime upgrade).
        #[arg(long)]
        upgrade: bool,
        /// Detach into the background.
        #[arg(short, long)]
        daemon: bool,
    },
    /// Validate a config file: prints `ok`, or every problem as FILE:LINE:COL and exits 2.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Also connect to the store (every Redis node or sentinel named) and exit 1, listing
        /// the addresses tried, when it cannot be used.
        #[arg(long)]
        connect: bool,
    },
    /// Print a signed token made with the configured secret (for operators and tests).
    Token {
        /// The config file whose token settings (and secret variable) to use.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// The `user_id` claim.
        #[arg(long)]
        user_id: String,
        /// The `role` claim (access tokens only).
        #[arg(long)]
        role: Option<String>,
        /// The token type.
        #[arg(long = "type", value_enum, default_value_t = Kind::Access)]
        kind: Kind,
        /// Lifetime in seconds (default: the configured lifetime for the type).
        #[arg(long)]
        ttl_seconds: Option<u64>,
        /// The session id (`sid` claim); a new random one by default.
        #[arg(long)]
        session_id: Option<String>,
    },
    /// Write a new private key for the gateway's token ring (PKCS#8 PEM, mode 0600; never
    /// overwrites a file).
    Keygen {
        /// The key's algorithm.
        #[arg(long, value_enum)]
        algorithm: KeyAlgorithm,
        /// The file to create.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Print the JSON Schema of gateway.yaml (for editor completion and validation).
    Schema,
    /// Read a password from stdin and print its argon2id hash (for the users file).
    HashPassword {
        #[command(flatten)]
        cost: HashCost,
    },
}

/// Defaults are OWASP's argon2id recommendation (m = 19 MiB, t = 2, p = 1).
#[derive(clap::Args)]
struct HashCost {
    /// Memory cost in KiB.
    #[arg(long, default_value_t = 19 * 1024)]
    memory_kib: u32,
    /// Number of passes.
    #[arg(long, default_value_t = 2)]
    iterations: u32,
    /// Lanes.
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlgorithm {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Access,
    Refresh,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { algorithm, out } => {
            let alg = match algorithm {
                KeyAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
                KeyAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            };
            match portcullis::auth::keygen::write_new_key(&out, alg) {
                Ok(()) => {
                    println!("{}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Schema => {
            println!("{}", config::json_schema());
            ExitCode::SUCCESS
        }
        Command::HashPassword { cost } => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("error: cannot read a password from stdin");
                return ExitCode::from(2);
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("error: the password is empty");
                return ExitCode::from(2);
            }
            let settings = PasswordSettings {
                memory_kib: cost.memory_kib,
                iterations: cost.iterations,
                parallelism: cost.parallelism,
                ..Default::default()
            };
            match hash_blocking(&settings, password) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(_) => {
                    eprintln!("error: invalid argon2 parameters");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check { config, connect } => match config::load(&config) {
            Ok(cfg) if connect => {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let (lines, result) = runtime.block_on(portcullis::store::probe(&cfg.store));
                for l in lines {
                    println!("{l}");
                }
                match result {
                    Ok(()) => {
                        println!("ok");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        println!("error: the store cannot be used: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                println!("{errors}");
                ExitCode::from(2)
            }
        },
        Command::Token { config, user_id, role, kind, ttl_seconds, session_id } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            let kind = match kind {
                Kind::Access => TokenKind::Access,
                Kind::Refresh => TokenKind::Refresh,
            };
            if kind == TokenKind::Access && role.is_none() {
                eprintln!("error: an access token needs --role");
                return ExitCode::from(2);
            }
            let max = cfg.tokens.max_lifetime.as_secs();
            if kind == TokenKind::Access && ttl_seconds.is_some_and(|t| t > max) {
                eprintln!("error: the gateway refuses access tokens that live longer than {max} s (`tokens.max_lifetime_minutes`)");
                return ExitCode::from(2);
            }
            let session_id = session_id.unwrap_or_else(new_id);
            let manager = TokenManager::new(&cfg.tokens);
            let spec = TokenSpec {
                user_id: &user_id,
                role: role.as_deref(),
                kind,
                session_id: &session_id,
                ttl: ttl_seconds.map(Duration::from_secs),
                jti: None,
            };
            match manager.create_token(&spec) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, upgrade, daemon } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("portcullis: refusing to start: {} problem(s) in {}", errors.0.len(), config.display());
                    return ExitCode::from(2);
                }
            };
            portcullis::logging::init(&cfg.logging);
            tracing::info!(listen = %cfg.server.listen, admin = %cfg.server.admin_listen, routes = cfg.policy.routes.routes().len(), "portcullis starting");
            match build_server(cfg, RunOptions { upgrade, daemon }) {
                Ok(server) => server.run_forever(),
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
