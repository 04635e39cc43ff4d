//! `status`: every server's role, term, leader, height, tip and faults, and
//! the membership as the leader sees it.

use crate::context::Ctx;
use anyhow::anyhow;
use bank_ledger::client::{fault_settings, gather_status, status_json};
use std::time::Duration;

/// Prints one row per server, then the membership; fails if none answered.
pub async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let rows = gather_status(&ctx.servers, ctx.timeout.min(Duration::from_secs(2))).await;
    let result = if rows.iter().any(|(_, r)| r.is_ok()) {
        Ok(())
    } else {
        Err(anyhow!("no server reachable"))
    };
    if ctx.json {
        out!("{}", status_json(&rows));
        return result;
    }
    out!(
        "{:<4} {:<22} {:<12} {:>6} {:>7} {:>8}  {:<16}  FAULTS",
        "ID",
        "ADDR",
        "ROLE",
        "TERM",
        "LEADER",
        "HEIGHT",
        "TIP"
    );
    let mut tips = std::collections::BTreeSet::new();
    for (s, r) in &rows {
        match r {
            Ok(st) => {
                tips.insert((st.height, st.tip_hash.clone()));
                out!(
                    "{:<4} {:<22} {:<12} {:>6} {:>7} {:>8}  {:<16}  {}",
                    st.id,
                    s.addr,
                    st.role,
                    st.term,
                    st.leader_id.map_or("-".to_string(), |l| l.to_string()),
                    st.height,
                    &st.tip_hash[..16.min(st.tip_hash.len())],
                    st.faults.as_ref().map(fault_settings).unwrap_or_default().describe()
                );
            }
            Err(e) => out!(
                "{:<4} {:<22} {:<12}  ({e})",
                s.id.map_or("?".to_string(), |i| i.to_string()),
                s.addr,
                "unreachable"
            ),
        }
    }
    if tips.len() == 1 {
        out!("all reachable servers agree on the tip");
    }
    // Membership and peer health, as the leader sees them (or any node).
    let view = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .max_by_key(|st| (st.role == "leader", st.term));
    if let Some(st) = view {
        out!();
        out!("members as seen by node {} ({}):", st.id, st.role);
        out!(
            "{:<4} {:<22} {:<8} {:>12} {:>10}",
            "ID",
            "ADDR",
            "KIND",
            "LAST HEARD",
            "LAG"
        );
        for p in &st.peers {
            out!(
                "{:<4} {:<22} {:<8} {:>12} {:>10}",
                p.id,
                p.addr,
                if p.voter { "voter" } else { "learner" },
                match p.last_heard_ms {
                    Some(0) if p.id == st.id => "self".to_string(),
                    Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
                    None => "never".to_string(),
                },
                p.lag_entries.map_or("-".to_string(), |l| format!("{l} entries")),
            );
        }
    }
    result
}
