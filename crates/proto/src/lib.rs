//! Protobuf messages and gRPC services shared by brasa processes and their peers.
//!
//! The gRPC clients and servers (tonic) are generated only with the `grpc` feature, so that the
//! sans-IO cores can use the messages without pulling in tokio.
//!
//! Every `.proto` file lives under `proto/` in this crate and declares a `package`; the generated
//! code appears here as nested modules named after the package (for example package `brasa.rae`
//! becomes `brasa_proto::brasa::rae`). The packages only affect Rust and descriptor names: Python
//! peers import the generated modules by file name (`config_pb2`, `cmecafe_pb2`) as the COMET
//! documents do.
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
