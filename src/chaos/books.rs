//! The checker's own books: the final chain replayed from its committed
//! transactions without the ledger's rules, to hold the ledger to what its
//! users rely on: no available balance (balance less what is held) ever
//! negative, and every hold ending exactly once, by a post of at most what
//! it holds, a void, or its timeout, and never settled once it ended.

use super::check::Chain;
use super::workload::balance_changes;
use crate::ledger::{Genesis, Transaction};
use serde::Serialize;
use std::collections::BTreeMap;

/// Violations listed in full before the rest are only counted.
const MAX_LISTED: usize = 20;

/// How the holds of a run ended.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct HoldTally {
    pub placed: u64,
    pub posted: u64,
    pub voided: u64,
    pub expired: u64,
    /// Still held at the final tip (its timeout not reached by then).
    pub pending: u64,
}

/// A hold the replay has seen placed and not yet ended.
struct Pending {
    to: u64,
    amount: u64,
    deadline_ms: u64,
}

/// Replays `chain` (each block with its transactions' statuses) from
/// `genesis`'s balances; returns how the holds ended and what is wrong.
pub fn check(genesis: &Genesis, chain: &Chain) -> (HoldTally, Vec<String>) {
    let mut tally = HoldTally::default();
    let mut v = Vec::new();
    let note = |v: &mut Vec<String>, s: String| {
        if v.len() < MAX_LISTED {
            v.push(s);
        } else if v.len() == MAX_LISTED {
            v.push("more violations of the books left out".into());
        }
    };
    let genesis_height = genesis.blocks.len().saturating_sub(1) as u64;
    let mut balances: BTreeMap<u64, i128> = genesis.balances.iter().map(|(a, b)| (*a, i128::from(*b))).collect();
    let mut held: BTreeMap<u64, i128> = BTreeMap::new();
    let mut pending: BTreeMap<(u64, String), Pending> = BTreeMap::new();
    for (block, statuses) in chain.iter().filter(|(b, _)| b.height() > genesis_height) {
        let height = block.height();
        let block_ms = block.header.timestamp_ms;
        // The chain releases a hold at the first block whose time reaches
        // its deadline, before that block's transactions run.
        pending.retain(|(from, _), h| {
            let due = h.deadline_ms <= block_ms;
            if due {
                tally.expired += 1;
                *held.entry(*from).or_default() -= i128::from(h.amount);
            }
            !due
        });
        for (tx, status) in block.txs.iter().zip(statuses) {
            if status != "committed" {
                continue;
            }
            for (account, change) in balance_changes(tx) {
                *balances.entry(account).or_default() += change;
            }
            match tx {
                Transaction::Hold {
                    id,
                    from,
                    to,
                    amount,
                    timeout_ms,
                    ..
                } => {
                    tally.placed += 1;
                    let key = (*from, id.to_string());
                    if pending.contains_key(&key) {
                        note(
                            &mut v,
                            format!("hold {id} of account {from} placed twice (height {height})"),
                        );
                    }
                    *held.entry(*from).or_default() += i128::from(*amount);
                    pending.insert(
                        key,
                        Pending {
                            to: *to,
                            amount: *amount,
                            deadline_ms: block_ms.saturating_add(*timeout_ms),
                        },
                    );
                }
                Transaction::Post {
                    id, hold_id, from, to, ..
                }
                | Transaction::Void {
                    id, hold_id, from, to, ..
                } => {
                    let Some(h) = pending.remove(&(*from, hold_id.to_string())) else {
                        note(
                            &mut v,
                            format!(
                                "{} {id} at height {height} settles hold {hold_id} of account {from}, \
                                 which is not pending (never placed, or ended before)",
                                tx.kind()
                            ),
                        );
                        continue;
                    };
                    *held.entry(*from).or_default() -= i128::from(h.amount);
                    if h.to != *to {
                        note(&mut v, format!("hold {hold_id} is to {}, but {to} settled it", h.to));
                    }
                    match tx {
                        Transaction::Post { amount, .. } => {
                            tally.posted += 1;
                            if *amount > h.amount {
                                note(
                                    &mut v,
                                    format!("post {id} moves {amount}, but hold {hold_id} holds {}", h.amount),
                                );
                            }
                        }
                        _ => tally.voided += 1,
                    }
                }
                _ => {}
            }
        }
        for (account, balance) in &balances {
            let on_hold = held.get(account).copied().unwrap_or(0);
            if *balance < 0 || balance - on_hold < 0 {
                note(
                    &mut v,
                    format!("account {account} has {balance}, {on_hold} of it held, after block {height}"),
                );
            }
        }
    }
    tally.pending = pending.len() as u64;
    (tally, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::workload::OpKind;
    use crate::ledger::genesis::GenesisFile;
    use crate::ledger::{AccountKey, Block, Hash32, TxId};

    fn genesis() -> Genesis {
        Genesis::build(GenesisFile::generated(3, 100, 0, |id| AccountKey::dev(id).public())).unwrap()
    }

    fn tx(id: &str, kind: OpKind) -> Transaction {
        kind.transaction(TxId::new(id).unwrap(), 0).unwrap()
    }

    fn hold(id: &str, from: u64, to: u64, amount: u64, timeout_ms: u64) -> Transaction {
        tx(
            id,
            OpKind::Hold {
                from,
                to,
                amount,
                timeout_ms,
            },
        )
    }

    fn post(id: &str, hold_id: &str, from: u64, to: u64, amount: u64) -> Transaction {
        tx(
            id,
            OpKind::Post {
                hold_id: hold_id.into(),
                from,
                to,
                amount,
            },
        )
    }

    fn void(id: &str, hold_id: &str, from: u64, to: u64) -> Transaction {
        tx(
            id,
            OpKind::Void {
                hold_id: hold_id.into(),
                from,
                to,
            },
        )
    }

    /// `blocks` as `(time, committed transactions)`, after genesis.
    fn chain(g: &Genesis, blocks: Vec<(u64, Vec<Transaction>)>) -> Chain {
        let mut c: Chain = g.blocks.iter().map(|b| (b.clone(), Vec::new())).collect();
        for (ms, txs) in blocks {
            let statuses = vec!["committed".to_string(); txs.len()];
            let height = c.len() as u64;
            c.push((
                Block::new(Hash32([0; 32]), height, Hash32([0; 32]), ms, 0, txs),
                statuses,
            ));
        }
        c
    }

    #[test]
    fn holds_end_once_each_way_and_an_honest_chain_passes() {
        let g = genesis();
        let c = chain(
            &g,
            vec![
                (
                    1_000,
                    vec![
                        hold("h1", 0, 1, 60, 5_000),
                        hold("h2", 1, 2, 50, 5_000),
                        hold("h3", 2, 0, 40, 500),
                    ],
                ),
                // h3's timeout passes before this block's transactions run.
                (2_000, vec![post("p1", "h1", 0, 1, 30), void("v2", "h2", 1, 2)]),
                (
                    3_000,
                    vec![tx(
                        "t",
                        OpKind::Transfer {
                            from: 2,
                            to: 0,
                            amount: 100,
                        },
                    )],
                ),
            ],
        );
        let (tally, v) = check(&g, &c);
        assert_eq!(v, Vec::<String>::new());
        assert_eq!(
            tally,
            HoldTally {
                placed: 3,
                posted: 1,
                voided: 1,
                expired: 1,
                pending: 0
            }
        );
    }

    #[test]
    fn a_second_settlement_a_late_one_an_overpost_and_spent_holds_are_found() {
        let g = genesis();
        let c = chain(
            &g,
            vec![
                (1_000, vec![hold("h1", 0, 1, 60, 5_000), hold("h2", 1, 2, 10, 100)]),
                // Account 0 spends what it holds: available goes negative.
                (
                    1_010,
                    vec![tx(
                        "t",
                        OpKind::Transfer {
                            from: 0,
                            to: 2,
                            amount: 50,
                        },
                    )],
                ),
                (1_020, vec![post("p1", "h1", 0, 1, 70), void("v1", "h1", 0, 1)]),
                // h2 ended at its timeout (1,100) before this block.
                (2_000, vec![post("p2", "h2", 1, 2, 5)]),
            ],
        );
        let (tally, v) = check(&g, &c);
        let all = v.join("\n");
        assert!(all.contains("account 0 has 50, 60 of it held, after block"), "{all}");
        assert!(all.contains("post p1 moves 70, but hold h1 holds 60"), "{all}");
        assert!(all.contains("void v1 at height"), "{all}");
        assert!(all.contains("post p2 at height"), "{all}");
        assert_eq!((tally.posted, tally.expired), (1, 1));
    }
}
