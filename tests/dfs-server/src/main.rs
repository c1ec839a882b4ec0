//! `dfs-test-server`: the test server on its own, for local runs against
//! `STORAGE_DFS_ENDPOINT=http://127.0.0.1:10004/devstoreaccount1`.
//!
//! Usage: `dfs-test-server [ADDR] [FILESYSTEM...]` (default `127.0.0.1:10004`). It accepts
//! Shared Key and account SAS for `devstoreaccount1` with the well-known key. Ctrl-C stops it;
//! everything it held is gone then.

use dfs_test_server::{DfsServer, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next() {
        None => SocketAddr::from(([127, 0, 0, 1], 10004)),
        Some(a) if a == "-h" || a == "--help" => {
            println!("usage: dfs-test-server [ADDR (default 127.0.0.1:10004)] [FILESYSTEM...]");
            return;
        }
        Some(a) => match a.parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("dfs-test-server: {a}: {e}");
                std::process::exit(2);
            }
        },
    };
    let mut builder = DfsServer::builder().bind(addr);
    let filesystems: Vec<String> = args.collect();
    for fs in &filesystems {
        builder = builder.filesystem(fs);
    }
    let server = match builder.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dfs-test-server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "dfs-test-server: ADLS Gen2 (DFS) endpoint {}",
        server.endpoint()
    );
    println!(
        "  Blob endpoint {} (Put Blob, Get Blob Properties)",
        server.blob_endpoint()
    );
    println!("  account {DEV_ACCOUNT}, key {DEV_ACCOUNT_KEY}");
    println!(
        "  STORAGE_DFS_ENDPOINT=http://{}/{DEV_ACCOUNT}",
        server.addr()
    );
    if !filesystems.is_empty() {
        println!("  filesystems: {}", filesystems.join(", "));
    }
    println!("Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    let stats = server.stats();
    println!(
        "dfs-test-server: stopped after {} requests on {} connections",
        stats.requests, stats.connections
    );
}
