//! The client-facing side of a node: the gRPC service, forwarding to the
//! leader, and the leader's block producer.

pub mod producer;
pub mod service;

pub use producer::{BlockProducer, ProducerConfig, SubmitError};
pub use service::BankApi;
