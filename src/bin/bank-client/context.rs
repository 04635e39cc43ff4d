//! What every command gets: the servers, the deadline, the output mode, the
//! admin token, the keystore and the pinned chain; one call to any server,
//! and output as JSON or as text.

use crate::errors::explain;
use bank_ledger::auth::AdminToken;
use bank_ledger::client::{call_any, Server};
use bank_ledger::ledger::Hash32;
use bank_ledger::proto::bank::bank_client::BankClient;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Channel;

/// `println!` that ends the program quietly, with the status a process
/// killed by SIGPIPE has (141), when the reader of stdout has gone
/// (`bank-client chain | head`), as Unix tools do; any other write error
/// (a full disk) is one line and exit 1. (Restoring SIGPIPE's default
/// instead would also kill the client when a server drops a connection
/// mid-write, e.g. a TLS server refusing plain text.)
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*).and_then(|()| stdout.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
            eprintln!("error: cannot write the output: {e}");
            std::process::exit(1);
        }
    }};
}

/// The global options, resolved once, for every command.
pub struct Ctx {
    pub servers: Vec<Server>,
    pub timeout: Duration,
    /// `--json`: print machine-readable JSON.
    pub json: bool,
    pub admin: Option<AdminToken>,
    pub keystore: PathBuf,
    /// `--chain-id`: the only chain to sign for.
    pub chain_id: Option<Hash32>,
}

impl Ctx {
    /// [`call_any`] over the servers, within the deadline; a failure is
    /// [`explain`]ed.
    pub async fn call<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnMut(BankClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        call_any(&self.servers, self.timeout, f).await.map_err(explain)
    }

    /// Prints `json()` on one line with `--json`, else runs `text`.
    pub fn print<J: std::fmt::Display>(&self, json: impl FnOnce() -> J, text: impl FnOnce()) {
        if self.json {
            out!("{}", json());
        } else {
            text();
        }
    }
}
