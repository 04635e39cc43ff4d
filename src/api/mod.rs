//! The client-facing side of a node: the `Bank` gRPC service. The service
//! is a thin adapter: each call goes to the file of its concern, and every
//! call that must run on the leader goes through [`forward`], which runs it
//! here or forwards it.

mod accounts;
mod errors;
mod explorer;
mod faults;
mod forward;
mod membership;
mod reads;
mod status;
mod transfers;
mod verify;

pub use errors::{auth_status, reject_status};
pub use explorer::{MAX_BLOCKS_PER_REQUEST, MAX_BLOCKS_REPLY_BYTES};
pub use reads::MAX_ACCOUNTS_PER_READ;
pub(crate) use status::role_name;
pub use transfers::MAX_BATCH_TRANSFERS;

use crate::auth::AdminToken;
use crate::producer::BlockProducer;
use crate::proto::bank::bank_client::BankClient;
use crate::proto::bank::bank_server::Bank;
use crate::proto::bank::{
    AccountHistoryRequest, AccountReply, AccountRequest, AddNodeRequest, BalanceReply, BalanceRequest, BalancesReply,
    BalancesRequest, Faults as FaultsMsg, GetBlocksReply, GetBlocksRequest, GetTxRequest, JsonReply,
    Membership as MembershipMsg, RemoveNodeRequest, SetFaultsRequest, StatusReply, StatusRequest, SubmitRequest,
    SubmitSetRequest, TransferBatchReply, TransferBatchRequest, TransferRequest, TxReply, VerifyReply, VerifyRequest,
};
use crate::raft::faults::Faults;
use crate::raft::peers::Peers;
use crate::raft::read_barrier::ReadBarrier;
use crate::raft::{NodeId, Raft};
use crate::storage::{Ledger, LogStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The client API of one node.
pub struct BankApi {
    /// What the API was built from: the node's Raft, ledger, producer and settings.
    parts: ApiParts,
    /// Connections to other nodes' APIs, for forwarding.
    peers: Mutex<HashMap<NodeId, (String, BankClient<Channel>)>>,
    /// One chain verification at a time: each costs a pass over the history.
    /// The permit goes with the pass, not the call: a caller that gives up
    /// (deadline) must not free it while the pass still runs.
    verifying: Arc<tokio::sync::Semaphore>,
    /// Account histories in progress (each reads up to 65,536 transactions).
    histories: Arc<tokio::sync::Semaphore>,
    /// Batches having their signatures checked: one per core, so clients
    /// cannot queue unbounded CPU work (a check goes on if its client leaves).
    signature_slots: Arc<tokio::sync::Semaphore>,
    /// Batches checking or waiting to check signatures: at most
    /// [`transfers::MAX_SIGNATURE_WAITERS`] beyond the slots.
    signature_queue: Arc<tokio::sync::Semaphore>,
}

/// What a node's API is built from.
pub struct ApiParts {
    pub id: NodeId,
    /// The address clients and peers reach this node at.
    pub addr: String,
    pub raft: Raft,
    /// Linearizable reads wait here before they read the ledger.
    pub reads: ReadBarrier,
    pub ledger: Arc<Ledger>,
    pub log_store: LogStore,
    pub producer: BlockProducer,
    /// Upper bound on how long one request may take, whatever the client asks.
    pub request_timeout: Duration,
    /// Injected network faults; forwarding is server-to-server traffic too.
    pub faults: Arc<Faults>,
    /// When each peer was last heard from.
    pub peers_seen: Arc<Peers>,
    /// Required on control-plane calls when set; see [`crate::auth`].
    pub admin_token: Option<AdminToken>,
    /// Proves this node to the leader it forwards to, and checks who
    /// forwarded a request here.
    pub peer_gate: Arc<crate::peer_auth::PeerGate>,
    /// Test builds only: see [`crate::config::NodeConfig`].
    #[cfg(feature = "test-hooks")]
    pub propose_unchecked: bool,
}

impl BankApi {
    pub fn new(parts: ApiParts) -> BankApi {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BankApi {
            parts,
            peers: Mutex::new(HashMap::new()),
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
            histories: Arc::new(tokio::sync::Semaphore::new(2)),
            signature_slots: Arc::new(tokio::sync::Semaphore::new(cores)),
            signature_queue: Arc::new(tokio::sync::Semaphore::new(cores + transfers::MAX_SIGNATURE_WAITERS)),
        }
    }
}

#[tonic::async_trait]
impl Bank for BankApi {
    async fn transfer(&self, req: Request<TransferRequest>) -> Result<Response<TxReply>, Status> {
        transfers::transfer(self, req).await
    }

    async fn transfer_batch(&self, req: Request<TransferBatchRequest>) -> Result<Response<TransferBatchReply>, Status> {
        transfers::transfer_batch(self, req).await
    }

    async fn submit(&self, req: Request<SubmitRequest>) -> Result<Response<TxReply>, Status> {
        accounts::submit(self, req).await
    }

    async fn submit_set(&self, req: Request<SubmitSetRequest>) -> Result<Response<TxReply>, Status> {
        accounts::submit_set(self, req).await
    }

    async fn account(&self, req: Request<AccountRequest>) -> Result<Response<AccountReply>, Status> {
        accounts::account(self, req).await
    }

    async fn balance(&self, req: Request<BalanceRequest>) -> Result<Response<BalanceReply>, Status> {
        reads::balance(self, req).await
    }

    async fn balances(&self, req: Request<BalancesRequest>) -> Result<Response<BalancesReply>, Status> {
        reads::balances(self, req).await
    }

    async fn get_tx(&self, req: Request<GetTxRequest>) -> Result<Response<JsonReply>, Status> {
        reads::get_tx(self, req).await
    }

    async fn get_blocks(&self, req: Request<GetBlocksRequest>) -> Result<Response<GetBlocksReply>, Status> {
        explorer::get_blocks(self, req).await
    }

    async fn account_history(&self, req: Request<AccountHistoryRequest>) -> Result<Response<JsonReply>, Status> {
        explorer::account_history(self, req).await
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        status::status(self, req).await
    }

    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<MembershipMsg>, Status> {
        membership::add_node(self, req).await
    }

    async fn remove_node(&self, req: Request<RemoveNodeRequest>) -> Result<Response<MembershipMsg>, Status> {
        membership::remove_node(self, req).await
    }

    async fn verify(&self, req: Request<VerifyRequest>) -> Result<Response<VerifyReply>, Status> {
        verify::verify(self, req).await
    }

    async fn set_faults(&self, req: Request<SetFaultsRequest>) -> Result<Response<FaultsMsg>, Status> {
        faults::set_faults(self, req).await
    }
}

/// Longest a local read waits for this node's apply to catch up.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits, briefly, until this node has applied every entry it knows to be
/// committed. The leader answers a transfer once its apply has computed the
/// outcome, before the block is written; a lookup of that transfer on the
/// same node right after the answer then still finds it. Called only when a
/// local lookup found nothing, so hits pay nothing.
pub async fn catch_up_with_commit(raft: &Raft, log_store: &LogStore) {
    let Some(committed) = log_store.committed_index() else {
        return;
    };
    let mut metrics = raft.metrics();
    let _ = tokio::time::timeout(
        CATCH_UP_WAIT,
        metrics.wait_for(|m| m.last_applied.is_some_and(|a| a.index >= committed)),
    )
    .await;
}
