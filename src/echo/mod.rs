//! The seed's echo server and client over real Unix sockets.
//!
//! (Skeleton: the echo issue fills this in.)

use clap::Args;
use std::path::PathBuf;

/// Arguments of `udsim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Path of the socket to bind.
    pub path: PathBuf,
}

/// Arguments of `udsim client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Path of the server's socket.
    pub path: PathBuf,
}

/// Runs `udsim serve`; returns the process exit code.
pub fn run_serve(_args: ServeArgs) -> i32 {
    eprintln!("udsim: serve is not built yet");
    1
}

/// Runs `udsim client`; returns the process exit code.
pub fn run_client(_args: ClientArgs) -> i32 {
    eprintln!("udsim: client is not built yet");
    1
}
