//! The node's HTTP side: a live dashboard and block explorer (one static
//! page, no build step), its JSON API, Prometheus `/metrics`, and
//! `/healthz` / `/readyz` for orchestrators.
//!
//! Everything here reads this node's own applied state (cheap, never
//! forwarded); `/api/status` also asks every member for its status, as
//! `bank-client status` does. Every list is bounded.
//!
//! With a token (`--http-token-file`), every page but `/healthz`, `/readyz`
//! and the dashboard's static page needs `Authorization: Bearer TOKEN`; the
//! dashboard sends the token given after `#token=` in its address. Without
//! one, the node serves HTTP on loopback only (see `NodeError::OpenHttp`).

use crate::auth::AdminToken;
use crate::client::{gather_status, status_json, Server};
use crate::ledger::{Signer, TxId};
use crate::raft::{NodeId, Raft};
use crate::storage::{Ledger, LogStore, TxLookup};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const DASHBOARD: &str = include_str!("dashboard.html");
/// Most blocks one `/api/blocks` call returns.
const MAX_BLOCKS: u64 = 100;
/// Most bytes of blocks one `/api/blocks` call returns (at least one block).
const MAX_BLOCKS_BYTES: usize = 2 * 1024 * 1024;
/// Most balances one `/api/balances` call returns.
const MAX_BALANCES: usize = 1000;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub id: NodeId,
    pub raft: Raft,
    pub ledger: Arc<Ledger>,
    pub log_store: LogStore,
    /// A leader whose last quorum acknowledgement is older than this is cut
    /// off (its followers elect another after an election timeout).
    pub quorum_timeout: Duration,
    /// Account histories read up to 65,536 transactions each: at most this
    /// many at once, the rest are told to retry (the page is unauthenticated).
    pub history_slots: Arc<tokio::sync::Semaphore>,
    /// The last `/api/status` answer and when it was gathered: it dials
    /// every member, and every open dashboard asks each second.
    pub status_cache: Arc<std::sync::Mutex<Option<(std::time::Instant, Value)>>>,
    /// Required on every page but health and the static dashboard.
    pub token: Option<AdminToken>,
}

/// How long a gathered cluster status is served again.
const STATUS_CACHE: Duration = Duration::from_millis(900);

pub fn router(state: HttpState) -> Router {
    // What shows the ledger: behind the token when there is one.
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/status", get(api_status))
        .route("/api/blocks", get(api_blocks))
        .route("/api/block/:height", get(api_block))
        .route("/api/tx/:id", get(api_tx))
        .route("/api/account/:id", get(api_account))
        .route("/api/balances", get(api_balances))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        // Static: holds no data, and asks for the token itself.
        .route("/", get(|| async { Html(DASHBOARD) }))
        // Orchestrators' probes carry no credentials.
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(state)
}

/// Lets a request through if no token is set or it carries the token.
async fn require_token(State(s): State<HttpState>, req: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(p) if token.matches(p) => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong token"),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "this page needs `Authorization: Bearer TOKEN` (the node's --http-token-file)" })),
        )
            .into_response(),
    }
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// Ready: this node knows a leader and has applied everything it knows is
/// committed (a restarted or lagging node is not ready until caught up);
/// a leader must have heard from a quorum within the election timeout (a
/// leader cut off from its followers still believes it leads).
async fn readyz(State(s): State<HttpState>) -> Response {
    let m = s.raft.metrics().borrow().clone();
    let applied = m.last_applied.map_or(0, |l| l.index);
    let committed = s.log_store.committed_index().unwrap_or(0);
    let timeout_ms = s.quorum_timeout.as_millis() as u64;
    let unready = |msg: String| (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {msg}\n")).into_response();
    if m.state == openraft::ServerState::Leader {
        match m.millis_since_quorum_ack {
            Some(ms) if ms <= timeout_ms => {}
            Some(ms) => return unready(format!("leader without a quorum: last acknowledged {ms} ms ago")),
            None => return unready("leader not yet acknowledged by a quorum".into()),
        }
    }
    match m.current_leader {
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready: no leader known\n").into_response(),
        Some(_) if applied < committed => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: applied {applied} of {committed} committed entries\n"),
        )
            .into_response(),
        Some(l) => format!("ready: leader {l}, applied {applied}\n").into_response(),
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let m = s.raft.metrics().borrow().clone();
    let (height, _) = s.ledger.tip();
    let gauges = crate::stats::NodeGauges {
        id: s.id,
        role: crate::api::role_name(m.state),
        term: m.current_term,
        leader_id: m.current_leader,
        last_log_index: m.last_log_index.unwrap_or(0),
        committed_index: s.log_store.committed_index().unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        height,
        accounts: s.ledger.with_state(|st| st.balances.len() as u64),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::stats::render_prometheus(&gauges),
    )
        .into_response()
}

/// Every member's own status (and this node's view of membership).
async fn api_status(State(s): State<HttpState>) -> Response {
    let cached = s.status_cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((at, v)) = cached {
        if at.elapsed() < STATUS_CACHE {
            return Json(v).into_response();
        }
    }
    let m = s.raft.metrics().borrow().clone();
    let servers: Vec<Server> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| Server {
            id: Some(*id),
            addr: node.addr.clone(),
        })
        .collect();
    let rows = gather_status(&servers, Duration::from_millis(1500)).await;
    let v = json!({ "node": s.id, "nodes": status_json(&rows) });
    *s.status_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), v.clone()));
    Json(v).into_response()
}

#[derive(Deserialize)]
struct BlocksQuery {
    /// First height; default: the latest `limit` blocks.
    from: Option<u64>,
    limit: Option<u64>,
    /// Only each block's height, hash, time and transaction count (what the
    /// dashboard polls), not its transactions.
    #[serde(default)]
    summary: bool,
}

/// Blocks as in `chain.jsonl`, newest last; at most [`MAX_BLOCKS_BYTES`] of
/// them (at least one), since a full block is megabytes of JSON.
async fn api_blocks(State(s): State<HttpState>, Query(q): Query<BlocksQuery>) -> Response {
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_BLOCKS);
    let (tip, _) = s.ledger.tip();
    let from = q.from.unwrap_or_else(|| (tip + 1).saturating_sub(limit));
    let mut blocks: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    let mut h = from;
    while h <= tip && (blocks.len() as u64) < limit && bytes < MAX_BLOCKS_BYTES {
        let one = if q.summary {
            s.ledger.block(h).map(|b| {
                b.map(|b| {
                    json!({
                        "hash": b.hash(), "height": b.height(), "tx_count": b.txs.len(),
                        "timestamp_ms": b.header.timestamp_ms,
                    })
                    .to_string()
                })
            })
        } else {
            s.ledger.block_json(h)
        };
        match one {
            Ok(Some(b)) => {
                bytes += b.len();
                blocks.push(b);
            }
            Ok(None) => break,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
        h += 1;
    }
    // The blocks are JSON already: spliced in, not parsed and printed again.
    let body = format!(r#"{{"tip_height":{tip},"blocks":[{}]}}"#, blocks.join(","));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn api_block(State(s): State<HttpState>, Path(height): Path<u64>) -> Response {
    // Past the tip a block may be part way through its apply, its records
    // not all written.
    if height > s.ledger.tip().0 {
        return error(StatusCode::NOT_FOUND, format!("no block at height {height}"));
    }
    match s.ledger.block_json(height) {
        Ok(Some(b)) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no block at height {height}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// This node's explorer view, like every `/api` page: a miss waits only
/// for what this node knows to be committed. The linearizable lookup is
/// the gRPC `GetTx` (`bank-client tx`), which asks the leader on a miss.
#[derive(Deserialize)]
struct TxQuery {
    /// Whose id: the source account (or audited account) ...
    account: Option<u64>,
    /// ... or a genesis auditor.
    auditor: Option<u32>,
}

async fn api_tx(State(s): State<HttpState>, Path(id): Path<String>, Query(q): Query<TxQuery>) -> Response {
    let id = match TxId::new(id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let signer = match (q.account, q.auditor) {
        (Some(_), Some(_)) => return error(StatusCode::BAD_REQUEST, "give account or auditor, not both"),
        (Some(a), None) => Some(Signer::Account(a)),
        (None, Some(i)) => Some(Signer::Auditor(i)),
        (None, None) => None,
    };
    let mut found = s.ledger.find_tx(&id, signer);
    if matches!(found, Ok(TxLookup::Missing)) {
        crate::api::catch_up_with_commit(&s.raft, &s.log_store).await;
        found = s.ledger.find_tx(&id, signer);
    }
    match found {
        Ok(TxLookup::Found(v)) => Json(v).into_response(),
        Ok(TxLookup::Missing) => error(StatusCode::NOT_FOUND, format!("no committed transaction {id}")),
        Ok(TxLookup::Ambiguous(signers)) => {
            let names: Vec<String> = signers.iter().map(Signer::to_string).collect();
            error(
                StatusCode::CONFLICT,
                format!("transaction id {id} is used by {}: add ?account=N", names.join(", ")),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

async fn api_account(State(s): State<HttpState>, Path(id): Path<u64>, Query(q): Query<HistoryQuery>) -> Response {
    if s.ledger.balance(id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("unknown account {id}"));
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let Ok(slot) = Arc::clone(&s.history_slots).try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many history lookups at once; retry",
        );
    };
    let ledger = Arc::clone(&s.ledger);
    let history = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        ledger.account_history(id, limit, q.before)
    });
    match history.await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct BalancesQuery {
    /// First account id listed.
    from: Option<u64>,
    limit: Option<usize>,
}

/// A page of balances at one applied height, with the total of all.
async fn api_balances(State(s): State<HttpState>, Query(q): Query<BalancesQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_BALANCES);
    let from = q.from.unwrap_or(0);
    let v = s.ledger.with_state(|st| {
        // Genesis + issued - redeemed: u128 holds any sum of u64 balances.
        let total: u128 = st.balances.values().map(|b| u128::from(*b)).sum();
        let page: Vec<Value> = st
            .balances
            .range(from..)
            .take(limit)
            .map(|(a, b)| json!({ "account": a, "balance": b }))
            .collect();
        let next = st.balances.range(from..).nth(limit).map(|(a, _)| *a);
        json!({
            "height": st.tip_height,
            "tip_hash": st.tip_hash,
            "accounts": st.balances.len(),
            "total": total,
            "genesis_total": s.ledger.genesis_total(),
            "issued": st.registry.supply.issued,
            "redeemed": st.registry.supply.redeemed,
            "balances": page,
            "next_from": next,
        })
    });
    Json(v).into_response()
}
