//! How a `bank-server` node process is started, written once for the
//! `local-cluster` supervisor, `bank-chaos` and the tests: its id, how it
//! finds the cluster, its data dir and genesis, TLS files and extra flags.

use crate::tls::TlsFiles;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// How a node finds its cluster.
#[derive(Debug, Clone)]
pub enum Membership {
    /// A founding member: `--peers ID=HOST:PORT,...` (its own address among them).
    Peers(String),
    /// A new node serving at `listen` that joins through member `via`.
    Join { listen: String, via: String },
}

/// One node's command line.
#[derive(Debug, Clone)]
pub struct NodeLaunch {
    pub server_bin: PathBuf,
    pub id: u64,
    pub membership: Membership,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    /// `--http-listen`: an address, or `off`; unset, the node's default.
    pub http_listen: Option<String>,
    /// The node's certificate, key and the cluster CA, for TLS.
    pub tls: Option<TlsFiles>,
    /// Any further flags, after the others (each flag at most once: a
    /// repeated one is refused).
    pub extra_args: Vec<String>,
}

impl NodeLaunch {
    /// A founding member `id` of the cluster `peers`, with nothing else set.
    pub fn new(server_bin: &Path, id: u64, peers: &str, data_dir: &Path, genesis: &Path) -> NodeLaunch {
        NodeLaunch {
            server_bin: server_bin.to_path_buf(),
            id,
            membership: Membership::Peers(peers.to_string()),
            data_dir: data_dir.to_path_buf(),
            genesis: genesis.to_path_buf(),
            http_listen: None,
            tls: None,
            extra_args: Vec::new(),
        }
    }

    /// The process to spawn: stdin and stdout closed, stderr left to the caller.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.server_bin);
        cmd.args(["--id", &self.id.to_string()]);
        match &self.membership {
            Membership::Peers(peers) => cmd.args(["--peers", peers]),
            Membership::Join { listen, via } => cmd.args(["--listen", listen, "--join", via]),
        };
        if let Some(http) = &self.http_listen {
            cmd.args(["--http-listen", http]);
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key)
                .arg("--tls-ca")
                .arg(&tls.ca);
        }
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--genesis")
            .arg(&self.genesis)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }
}

/// A node process the harness owns: started from a [`NodeLaunch`], its
/// stderr in a file, stopped by signals. Dropping it kills the node, so no
/// test or chaos run leaves a server behind.
#[derive(Debug, Default)]
pub struct NodeProcess {
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts the node (if it is not running) with its stderr written to
    /// `stderr`: appended to with `append`, else truncated first.
    pub fn start(&mut self, launch: &NodeLaunch, stderr: &Path, append: bool) -> std::io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(stderr)?;
        self.child = Some(launch.command().stderr(file).spawn()?);
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap: the node gets no chance to flush or say goodbye.
    pub fn kill(&mut self) -> std::io::Result<()> {
        match self.child.take() {
            Some(mut child) => {
                child.kill()?;
                child.wait().map(drop)
            }
            None => Ok(()),
        }
    }

    /// Sends `signal` (SIGTERM, SIGSTOP, SIGCONT ...) to the running node.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the node is not running"))?;
        let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
        // SAFETY: signals our own child, which is not reaped yet, so the
        // pid cannot name another process.
        if unsafe { libc::kill(pid, signal) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Waits for the node to exit (after a signal) and reaps it.
    pub fn wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self.child.take() {
            Some(mut child) => child.wait().map(Some),
            None => Ok(None),
        }
    }

    /// The node's exit status if it has exited by itself (reaping it), or
    /// `None` while it runs.
    pub fn exited(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The `--peers` value for nodes at `addrs` (id, HOST:PORT).
pub fn peers_arg<'a>(addrs: impl IntoIterator<Item = (u64, &'a str)>) -> String {
    addrs
        .into_iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A free loopback port, as the OS hands it out.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joiner_with_tls_gets_every_flag_and_extra_flags_come_last() {
        let mut launch = NodeLaunch::new(Path::new("bank-server"), 3, "", Path::new("d"), Path::new("g.json"));
        launch.membership = Membership::Join {
            listen: "127.0.0.1:1".into(),
            via: "127.0.0.1:2".into(),
        };
        launch.http_listen = Some("off".into());
        launch.tls = Some(crate::tls::node_files(Path::new("t"), 3));
        launch.extra_args = vec!["--batch-max-txs".into(), "7".into()];
        let args: Vec<String> = launch
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--id",
                "3",
                "--listen",
                "127.0.0.1:1",
                "--join",
                "127.0.0.1:2",
                "--http-listen",
                "off",
                "--tls-cert",
                "t/node-3.pem",
                "--tls-key",
                "t/node-3.key",
                "--tls-ca",
                "t/ca.pem",
                "--data-dir",
                "d",
                "--genesis",
                "g.json",
                "--batch-max-txs",
                "7",
            ]
        );
        assert_eq!(peers_arg([(0, "a:1"), (1, "b:2")]), "0=a:1,1=b:2");
    }
}
