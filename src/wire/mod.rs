//! The contract on the wire: generated proto types and their conversion to and from
//! the domain, shared by the server edge and the client (so `client` builds alone).

mod json;
mod ops;
mod requests;
mod session;
pub mod status;
mod world;

/// Generated messages and stubs of `pixsim.session.v1`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("pixsim.session.v1");

    /// The compiled contract, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("session_descriptor");
}

pub use json::{json_to_struct, json_to_value, struct_to_json, value_to_json};
pub use session::{datetime, timestamp};
