//! The explorer's reads: blocks from a height (past this node's tip, from
//! the leader), an account's history (node-local). Bounded per call in
//! blocks, bytes and concurrent lookups.

use super::errors::reject_status;
use super::forward::Attempt;
use super::BankApi;
use crate::ledger::RejectReason;
use crate::proto::bank::{AccountHistoryRequest, GetBlocksReply, GetBlocksRequest, JsonReply};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Most blocks one `GetBlocks` call returns.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 256;

/// Most bytes of block JSON in one `GetBlocks` reply (at least one block is
/// always sent): keeps replies under gRPC's default 4 MiB message limit.
pub const MAX_BLOCKS_REPLY_BYTES: usize = 2 * 1024 * 1024;

/// Blocks from this node's own copy. Blocks past its tip may be
/// committed already (a client may just have been told of one): those are
/// asked of the leader, behind its read barrier, so a block acknowledged
/// before the call is always there. Without a leader the local answer
/// stands.
pub(super) async fn get_blocks(
    api: &BankApi,
    req: Request<GetBlocksRequest>,
) -> Result<Response<GetBlocksReply>, Status> {
    let (msg, via) = api.received(req)?;
    let local = read_blocks(api, &msg)?;
    if msg.from_height <= local.tip_height {
        return Ok(Response::new(local));
    }
    let from_leader = api
        .on_leader(via, &msg, || async {
            api.confirm_leadership().await?;
            read_blocks(api, &msg).map_err(Attempt::Done)
        })
        .await;
    Ok(Response::new(from_leader.unwrap_or(local)))
}

fn read_blocks(api: &BankApi, msg: &GetBlocksRequest) -> Result<GetBlocksReply, Status> {
    let limit = if msg.limit == 0 {
        MAX_BLOCKS_PER_REQUEST
    } else {
        msg.limit.min(MAX_BLOCKS_PER_REQUEST)
    };
    let (tip_height, _) = api.parts.ledger.tip();
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    let mut h = msg.from_height;
    while h <= tip_height && blocks.len() < limit as usize && bytes < MAX_BLOCKS_REPLY_BYTES {
        match api.parts.ledger.block_json(h) {
            Ok(Some(json)) => {
                bytes += json.len();
                blocks.push(json);
            }
            Ok(None) => break,
            Err(e) => return Err(Status::data_loss(e.to_string())),
        }
        h += 1;
    }
    Ok(GetBlocksReply {
        blocks_json: blocks,
        tip_height,
    })
}

pub(super) async fn account_history(
    api: &BankApi,
    req: Request<AccountHistoryRequest>,
) -> Result<Response<JsonReply>, Status> {
    let msg = req.into_inner();
    if api.parts.ledger.balance(msg.account).is_none() {
        return Err(reject_status(&RejectReason::UnknownAccount { account: msg.account }));
    }
    let limit = match msg.limit {
        0 => 20,
        n => n.min(1000) as usize,
    };
    let slot = Arc::clone(&api.histories)
        .try_acquire_owned()
        .map_err(|_| Status::resource_exhausted("busy: too many history lookups at once; retry"))?;
    // Reads up to thousands of blocks: off the async workers.
    let ledger = Arc::clone(&api.parts.ledger);
    let v = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        ledger.account_history(msg.account, limit, msg.before_height)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
    .map_err(|e| Status::data_loss(e.to_string()))?;
    Ok(Response::new(JsonReply { json: v.to_string() }))
}
