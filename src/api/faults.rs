//! Faults on command: partitions, delays and loss between nodes, set by a
//! control-plane call (admin token) and applied to this node's traffic.

use super::BankApi;
use crate::auth::authorize_control;
use crate::fault_settings::FaultSettings;
use crate::proto::bank::{Faults as FaultsMsg, PartitionGroup, SetFaultsRequest};
use tonic::{Request, Response, Status};

pub(super) async fn set_faults(api: &BankApi, req: Request<SetFaultsRequest>) -> Result<Response<FaultsMsg>, Status> {
    authorize_control(api.parts.admin_token.as_ref(), &req)?;
    let msg = req.into_inner();
    let mut f = api.parts.faults.get();
    if msg.set_partition {
        f.partition = msg
            .partition
            .into_iter()
            .map(|g| g.members)
            .filter(|g| !g.is_empty())
            .collect();
    }
    if msg.set_delay {
        f.delay_min_ms = msg.delay_min_ms;
        f.delay_max_ms = msg.delay_max_ms;
        f.loss = msg.loss;
    }
    api.parts
        .faults
        .set(f)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(Response::new(faults_msg(&api.parts.faults.get())))
}

pub(super) fn faults_msg(f: &FaultSettings) -> FaultsMsg {
    FaultsMsg {
        partition: f
            .partition
            .iter()
            .map(|g| PartitionGroup { members: g.clone() })
            .collect(),
        delay_min_ms: f.delay_min_ms,
        delay_max_ms: f.delay_max_ms,
        loss: f.loss,
    }
}
