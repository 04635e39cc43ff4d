//! `verify`: each server re-checks its own stored chain.

use crate::context::Ctx;
use anyhow::anyhow;
use bank_ledger::client::{connect, request};
use bank_ledger::proto::bank::VerifyRequest;
use serde_json::{json, Value};

/// Asks every server to verify its own chain; one line (or JSON object) each.
pub async fn verify(ctx: &Ctx) -> anyhow::Result<()> {
    let calls = ctx.servers.iter().map(|s| async move {
        let res = match connect(&s.addr) {
            Ok(mut c) => {
                let mut req = request(VerifyRequest {}, ctx.timeout);
                if let Some(token) = &ctx.admin {
                    token.attach(&mut req);
                }
                c.verify(req).await.map(|r| r.into_inner())
            }
            Err(e) => Err(tonic::Status::invalid_argument(e.to_string())),
        };
        (s.clone(), res)
    });
    let rows = futures::future::join_all(calls).await;
    let mut damaged = 0;
    let mut verified = 0;
    let mut out = Vec::new();
    for (s, r) in &rows {
        match r {
            Ok(v) => {
                verified += 1;
                let secs = (v.elapsed_ms as f64 / 1000.0).max(1e-3);
                let (bps, tps) = (v.blocks as f64 / secs, v.transfers as f64 / secs);
                if !ctx.json {
                    out!(
                        "{:<22} intact: {} blocks, {} transfers in {} ms ({bps:.0} blocks/s, {tps:.0} transfers/s); tip {} at height {}",
                        s.addr, v.blocks, v.transfers, v.elapsed_ms, v.tip_hash, v.tip_height
                    );
                }
                out.push(json!({"id": s.id, "addr": s.addr, "intact": true, "blocks": v.blocks,
                    "transfers": v.transfers, "elapsed_ms": v.elapsed_ms, "blocks_per_s": bps.round(),
                    "transfers_per_s": tps.round(), "tip_height": v.tip_height, "tip_hash": v.tip_hash}));
            }
            Err(e) => {
                let corrupt = e.code() == tonic::Code::DataLoss;
                damaged += usize::from(corrupt);
                let what = if corrupt { "DAMAGED" } else { "not verified" };
                if !ctx.json {
                    out!("{:<22} {what}: {}", s.addr, e.message().replace('\n', " "));
                }
                out.push(
                    json!({"id": s.id, "addr": s.addr, "intact": false, "damaged": corrupt, "error": e.message()}),
                );
            }
        }
    }
    if ctx.json {
        out!("{}", Value::Array(out));
    }
    if damaged > 0 {
        return Err(anyhow!("{damaged} server(s) hold a damaged chain"));
    }
    if verified == 0 {
        let why = rows
            .iter()
            .find_map(|(_, r)| r.as_ref().err())
            .map_or(String::new(), |e| format!(": {}", e.message()));
        return Err(anyhow!("no server could verify its chain{why}"));
    }
    Ok(())
}
