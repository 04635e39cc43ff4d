//! Compiles the gRPC definitions with `protox`, a pure-Rust protobuf compiler,
//! so a fresh machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/bank.proto", "proto/raft.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // For gRPC server reflection: tools like grpcurl list and call the API
    // with no .proto file at hand.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("bank_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
