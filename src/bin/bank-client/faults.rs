//! Network faults between servers: partition, heal, delay.

use crate::context::Ctx;
use anyhow::anyhow;
use bank_ledger::client::{fault_settings, set_faults_everywhere};
use bank_ledger::proto::bank::{PartitionGroup, SetFaultsRequest};
use serde_json::{json, Value};
use std::time::Duration;

/// `partition`: cuts server-to-server traffic into `groups` of node ids
/// separated by commas.
pub async fn partition(ctx: &Ctx, groups: Vec<String>) -> anyhow::Result<()> {
    let mut partition = Vec::new();
    for g in &groups {
        let members = g
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| m.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow!("bad group {g:?}: expected node ids separated by commas, e.g. 0,1"))?;
        partition.push(PartitionGroup { members });
    }
    let req = SetFaultsRequest {
        set_partition: true,
        partition,
        ..Default::default()
    };
    apply_faults(ctx, req).await
}

/// `heal`: removes the partition.
pub async fn heal(ctx: &Ctx) -> anyhow::Result<()> {
    let req = SetFaultsRequest {
        set_partition: true,
        ..Default::default()
    };
    apply_faults(ctx, req).await
}

/// `delay`: delays server-to-server messages by `min_ms` to `max_ms` and
/// drops a fraction `loss` of them; `off` removes both.
pub async fn delay(
    ctx: &Ctx,
    min_ms: Option<u64>,
    max_ms: Option<u64>,
    loss: Option<f64>,
    off: bool,
) -> anyhow::Result<()> {
    let req = if off {
        SetFaultsRequest {
            set_delay: true,
            ..Default::default()
        }
    } else {
        SetFaultsRequest {
            set_delay: true,
            delay_min_ms: min_ms.unwrap_or(0),
            delay_max_ms: max_ms.unwrap_or(0),
            loss: loss.unwrap_or(0.0),
            ..Default::default()
        }
    };
    apply_faults(ctx, req).await
}

/// Sends a fault setting to every server and reports what each applies.
/// Fails if a server refused it or none could be reached.
async fn apply_faults(ctx: &Ctx, req: SetFaultsRequest) -> anyhow::Result<()> {
    let results = set_faults_everywhere(
        &ctx.servers,
        req,
        ctx.timeout.min(Duration::from_secs(3)),
        ctx.admin.as_ref(),
    )
    .await;
    let mut applied = 0;
    let mut rows = Vec::new();
    for (s, r) in &results {
        match r {
            Ok(f) => {
                applied += 1;
                let f = fault_settings(f);
                if !ctx.json {
                    out!("{:<22} now applies: {}", s.addr, f.describe());
                }
                rows.push(json!({"id": s.id, "addr": s.addr, "faults": f}));
            }
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::InvalidArgument | tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                return Err(anyhow!("{}: {}", s.addr, e.message()))
            }
            Err(e) => {
                if !ctx.json {
                    out!(
                        "{:<22} unreachable ({}): it applies no faults until told again",
                        s.addr,
                        e.message()
                    );
                }
                rows.push(json!({"id": s.id, "addr": s.addr, "error": e.message()}));
            }
        }
    }
    if ctx.json {
        out!("{}", Value::Array(rows));
    }
    if applied == 0 {
        return Err(anyhow!("no server reachable"));
    }
    Ok(())
}
