//! A Raft-replicated, proof-of-work hash-chained banking ledger.
//!
//! Layers, innermost first: [`ledger`] (pure domain), [`storage`] (sled),
//! [`raft`] (openraft wiring and transport), [`api`] (client gRPC service,
//! forwarding, block production), [`node`] (one server put together).

pub mod codec;
pub mod ledger;
pub mod raft;
pub mod storage;
