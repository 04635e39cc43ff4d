//! Membership changes: `cluster add` and `cluster remove`.

use crate::context::Ctx;
use crate::ClusterCmd;
use bank_ledger::client::control_request;
use bank_ledger::proto::bank::{AddNodeRequest, RemoveNodeRequest};
use serde_json::json;

/// `cluster add|remove`: changes membership and prints the new one.
pub async fn cluster(ctx: &Ctx, op: ClusterCmd) -> anyhow::Result<()> {
    let (verb, m) = match op {
        ClusterCmd::Add { id, addr } => {
            let msg = AddNodeRequest { id, addr };
            let m = ctx
                .call(|mut c, t| {
                    let msg = msg.clone();
                    let admin = ctx.admin.clone();
                    async move { Ok(c.add_node(control_request(msg, t, admin.as_ref())).await?.into_inner()) }
                })
                .await?;
            (format!("added node {id}"), m)
        }
        ClusterCmd::Remove { id } => {
            let msg = RemoveNodeRequest { id };
            let m = ctx
                .call(|mut c, t| {
                    let admin = ctx.admin.clone();
                    async move {
                        Ok(c.remove_node(control_request(msg, t, admin.as_ref()))
                            .await?
                            .into_inner())
                    }
                })
                .await?;
            (format!("removed node {id}"), m)
        }
    };
    ctx.print(
        || json!({"voters": m.voters, "learners": m.learners}),
        || out!("{verb}; voters {:?} learners {:?}", m.voters, m.learners),
    );
    Ok(())
}
