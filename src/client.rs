//! A client of the bank API that knows several servers and moves on to the
//! next when one is down. Used by `bank-client` and the tests.

use crate::auth::AdminToken;
use crate::ledger::{AccountKey, Hash32, Signature, Transaction, TxId};
use crate::proto::bank::bank_client::BankClient;
use crate::proto::bank::{BalanceRequest, PeerState, StatusReply, StatusRequest, TransferRequest};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// One configured server: its address and, when known, its node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: Option<u64>,
    pub addr: String,
}

/// Parses `HOST:PORT,...` or `ID=HOST:PORT,...`; ids default to the position.
pub fn parse_servers(s: &str) -> Result<Vec<Server>, String> {
    let mut out = Vec::new();
    for (i, entry) in s.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let (id, addr) = match entry.split_once('=') {
            Some((id, addr)) => (
                Some(
                    id.parse::<u64>()
                        .map_err(|_| format!("bad server {entry:?}: expected [ID=]HOST:PORT"))?,
                ),
                addr,
            ),
            None => (Some(i as u64), entry),
        };
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("bad server {entry:?}: expected [ID=]HOST:PORT")),
        }
        out.push(Server {
            id,
            addr: addr.to_string(),
        });
    }
    if out.is_empty() {
        return Err("no servers given".into());
    }
    Ok(out)
}

/// Connects lazily to `addr`: nothing is dialled until the first call.
pub fn connect(addr: &str) -> Result<BankClient<Channel>, crate::tls::BadAddress> {
    let channel = crate::tls::endpoint(addr)?
        .connect_timeout(Duration::from_millis(1000))
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(BankClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// Largest reply a client accepts. A block comes whole, and the genesis
/// block of 100,000 accounts is ~13 MiB of JSON (gRPC's default is 4 MiB).
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// True for errors that say "this server cannot answer now", not "no":
/// it is down, or the connection broke mid-call. Every call this client
/// makes is idempotent (transfers carry their id), so trying the next server
/// is safe.
pub fn is_unreachable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        // tonic reports a connection that broke mid-call as Unknown.
        Code::Unknown => {
            let m = status.message();
            m.contains("transport") || m.contains("connection") || m.contains("h2 protocol")
        }
        _ => false,
    }
}

/// Calls `f` on each server in turn until one answers (with a result or a
/// definite error); unreachable servers are skipped. Opens a connection per
/// server tried: for one-off calls. A client that makes many keeps a
/// [`Connections`].
pub async fn call_any<T, F, Fut>(servers: &[Server], timeout: Duration, f: F) -> Result<T, Status>
where
    F: FnMut(BankClient<Channel>, Duration) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    Connections::default().call_any(servers, timeout, f).await
}

/// One client's connections, one per server, opened on first use and kept:
/// a request then costs a stream on an open HTTP/2 connection, not a TCP
/// and HTTP/2 handshake (measured: ~250 us of the benchmark client's CPU
/// per single-transfer request, and as much again on the server).
/// A broken connection is re-established by the channel itself.
#[derive(Default)]
pub struct Connections {
    open: HashMap<String, BankClient<Channel>>,
}

impl Connections {
    /// [`call_any`] over this client's connections.
    pub async fn call_any<T, F, Fut>(&mut self, servers: &[Server], timeout: Duration, mut f: F) -> Result<T, Status>
    where
        F: FnMut(BankClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Status::unavailable("no server reachable");
        for server in servers {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            let client = match self.open.get(&server.addr) {
                Some(c) => c.clone(),
                None => {
                    let c = connect(&server.addr).map_err(|e| Status::invalid_argument(e.to_string()))?;
                    self.open.insert(server.addr.clone(), c.clone());
                    c
                }
            };
            match f(client, remaining).await {
                Ok(v) => return Ok(v),
                Err(s) if is_unreachable(&s) => {
                    last = Status::unavailable(format!("{}: {}", server.addr, s.message()));
                }
                Err(s) => return Err(s),
            }
        }
        Err(last)
    }
}

pub use crate::wire::request;

/// A control-plane request: [`request`] plus the admin token, if any.
pub fn control_request<T>(msg: T, timeout: Duration, admin: Option<&AdminToken>) -> tonic::Request<T> {
    let mut r = request(msg, timeout);
    if let Some(t) = admin {
        t.attach(&mut r);
    }
    r
}

/// Sends a fault setting to every server (control-plane calls are never
/// forwarded: each server applies its own). Returns each server's answer.
pub async fn set_faults_everywhere(
    servers: &[Server],
    req: crate::proto::bank::SetFaultsRequest,
    timeout: Duration,
    admin: Option<&AdminToken>,
) -> Vec<(Server, Result<crate::proto::bank::Faults, Status>)> {
    let calls = servers.iter().map(|s| {
        let req = req.clone();
        async move {
            let res = match connect(&s.addr) {
                Ok(mut c) => c
                    .set_faults(control_request(req, timeout, admin))
                    .await
                    .map(|r| r.into_inner()),
                Err(e) => Err(Status::invalid_argument(e.to_string())),
            };
            (s.clone(), res)
        }
    });
    futures::future::join_all(calls).await
}

/// Converts the wire form of fault settings to the node's own.
pub fn fault_settings(f: &crate::proto::bank::Faults) -> crate::fault_settings::FaultSettings {
    crate::fault_settings::FaultSettings {
        partition: f.partition.iter().map(|g| g.members.clone()).collect(),
        delay_min_ms: f.delay_min_ms,
        delay_max_ms: f.delay_max_ms,
        loss: f.loss,
    }
}

/// The chain id (genesis hash) the servers run, which transfer signatures
/// cover; `pinned`, when given, must match it.
pub async fn chain_id(servers: &[Server], timeout: Duration, pinned: Option<Hash32>) -> Result<Hash32, Status> {
    let reply = call_any(servers, timeout, |mut c, t| async move {
        Ok(c.status(request(StatusRequest {}, t)).await?.into_inner())
    })
    .await?;
    let theirs = Hash32::from_hex(&reply.genesis_hash)
        .map_err(|e| Status::internal(format!("server reports a bad genesis hash: {e}")))?;
    match pinned {
        Some(ours) if ours != theirs => Err(Status::failed_precondition(format!(
            "server {} runs chain {theirs}, not the pinned chain {ours}; refusing to sign for it",
            reply.id
        ))),
        _ => Ok(theirs),
    }
}

/// How long a signed request stays valid by default: a client resubmits
/// an unanswered transfer for minutes at most, and a signature nobody
/// submitted is no use to anyone afterwards.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Unix milliseconds `lifetime` from now.
pub fn expiry_in(lifetime: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now + lifetime).as_millis().try_into().unwrap_or(u64::MAX)
}

/// A transfer request signed by `key` (the source account's), valid for
/// [`DEFAULT_LIFETIME`].
pub fn signed_transfer(key: &AccountKey, chain_id: Hash32, id: &TxId, to: u64, amount: u64) -> TransferRequest {
    signed_transfer_until(key, chain_id, id, to, amount, expiry_in(DEFAULT_LIFETIME))
}

/// A transfer request signed by `key`, valid until `expires_ms` (Unix ms).
pub fn signed_transfer_until(
    key: &AccountKey,
    chain_id: Hash32,
    id: &TxId,
    to: u64,
    amount: u64,
    expires_ms: u64,
) -> TransferRequest {
    let tx = key.transfer(chain_id, id.clone(), to, amount, expires_ms);
    TransferRequest {
        tx_id: id.to_string(),
        from: key.account,
        to,
        amount,
        expires_ms,
        signature: tx.signature().map(|s| s.0.to_vec()).unwrap_or_default(),
    }
}

/// A recorded balance check of `account`, signed by `key` (the account's
/// own, or genesis auditor `auditor`'s), valid for [`DEFAULT_LIFETIME`].
pub fn signed_balance_check(
    key: &AccountKey,
    chain_id: Hash32,
    id: &TxId,
    account: u64,
    auditor: Option<u32>,
) -> BalanceRequest {
    let expires_ms = expiry_in(DEFAULT_LIFETIME);
    let tx = Transaction::BalanceCheck {
        id: id.clone(),
        account,
        auditor,
        expires_ms,
        signature: Signature::NONE,
    };
    BalanceRequest {
        account,
        record: true,
        tx_id: id.to_string(),
        signature: key.sign(chain_id, &tx).0.to_vec(),
        expires_ms,
        auditor,
    }
}

/// Why a server gave no status.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    #[error(transparent)]
    Address(#[from] crate::tls::BadAddress),
    #[error("{}", .0.message())]
    Call(#[from] tonic::Status),
}

/// One server's answer to a status call, or why there is none.
pub type StatusRow = (Server, Result<StatusReply, Unanswered>);

/// Every server's own status, asked in parallel; a server that does not
/// answer within `per_server` gets its error.
pub async fn gather_status(servers: &[Server], per_server: Duration) -> Vec<StatusRow> {
    let calls = servers.iter().map(|s| async move {
        let res = async {
            let mut c = connect(&s.addr)?;
            Ok(c.status(request(StatusRequest {}, per_server)).await?.into_inner())
        }
        .await;
        (s.clone(), res)
    });
    futures::future::join_all(calls).await
}

/// The JSON of `bank-client status --json` (and the dashboard): one object
/// per server, `role` "unreachable" for those that did not answer.
pub fn status_json(rows: &[StatusRow]) -> serde_json::Value {
    use serde_json::json;
    let peer_json = |p: &PeerState| {
        json!({
            "id": p.id, "addr": p.addr, "voter": p.voter, "last_heard_ms": p.last_heard_ms,
            "matched_index": p.matched_index, "lag_entries": p.lag_entries,
        })
    };
    let arr: Vec<serde_json::Value> = rows
        .iter()
        .map(|(s, r)| match r {
            Ok(st) => json!({
                "id": st.id, "addr": s.addr, "role": st.role, "term": st.term,
                "leader_id": st.leader_id, "height": st.height, "tip_hash": st.tip_hash,
                "last_log_index": st.last_log_index, "last_applied_index": st.last_applied_index,
                "committed_index": st.committed_index, "voters": st.voters, "learners": st.learners,
                "genesis_hash": st.genesis_hash,
                "millis_since_quorum_ack": st.millis_since_quorum_ack,
                "faults": st.faults.as_ref().map(fault_settings).unwrap_or_default(),
                "snapshot_index": st.snapshot_index, "purged_index": st.purged_index,
                "peers": st.peers.iter().map(peer_json).collect::<Vec<_>>(),
            }),
            Err(e) => json!({
                "id": s.id, "addr": s.addr, "role": "unreachable", "term": null,
                "leader_id": null, "height": null, "tip_hash": null, "error": e.to_string(),
            }),
        })
        .collect();
    serde_json::Value::Array(arr)
}
