//! The command line of `sample-api`.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::accounts::Accounts;
use crate::routes::App;

/// The lab's sample HTTP API.
///
/// Accounts are `user0000`, `user0001`, ... (at least four digits); the password of
/// `userNNNN` is `pw-NNNN`.
#[derive(Debug, Parser)]
#[command(name = "sample-api", version)]
pub struct Cli {
    /// Address to listen on, `IPv4:PORT` or `[IPv6]:PORT` (repeatable; an IPv6 listener is
    /// IPv6-only, so `0.0.0.0:P` and `[::]:P` can be given together).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8081")]
    pub listen: Vec<SocketAddr>,
    /// Number of accounts.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=crate::accounts::MAX_ACCOUNTS))]
    pub accounts: u32,
    /// How long every credential check takes, in milliseconds (a password hash's cost).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub login_delay_ms: u64,
    /// Number of items (`/items/1` to `/items/N`).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub items: u64,
    /// Access-log file, appended to (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

impl Cli {
    /// The application state this command line describes.
    pub fn app(&self) -> App {
        App::new(
            Accounts::new(self.accounts),
            self.items,
            Duration::from_millis(self.login_delay_ms),
        )
    }
}
