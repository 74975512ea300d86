//! Compiles the contract with protox (pure Rust, no `protoc`) and generates the prost
//! messages and tonic stubs. The same descriptor set is written to `OUT_DIR` so the
//! server can offer it through gRPC reflection.

use std::{env, path::PathBuf};

use prost::Message;

const PROTO: &str = "proto/pixsim/session/v1/session.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile([PROTO], ["proto"])?;
    std::fs::write(out_dir.join("session_descriptor.bin"), fds.encode_to_vec())?;

    // `Any` details carry `type.googleapis.com/pixsim.session.v1.GameSession`.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");

    // A client-only build (`--no-default-features --features client`) has no server stack.
    let server = env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_prost_build::configure()
        .build_server(server)
        .build_client(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
