//! `dms-local --listen 127.0.0.1:PORT`: serves the DMS JSON protocol and the control API until SIGTERM or
//! Ctrl-C, then drops the publications, subscriptions and slots it created.

use std::sync::Arc;

use dms_local::{pg_connect::TrustedCas, replication, router, App};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DMS_LOCAL_LOG")
                .unwrap_or_else(|_| "dms_local=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let listen = match args.as_slice() {
        [_, flag, addr] if flag == "--listen" => addr.clone(),
        _ => return Err("usage: dms-local --listen 127.0.0.1:PORT".into()),
    };
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_string());
    let ca_file = std::env::var_os("DMS_LOCAL_CA_FILE").map(std::path::PathBuf::from);
    let cas = match &ca_file {
        Some(path) => TrustedCas(Some(std::fs::read(path)?)),
        None => TrustedCas(None),
    };
    let config = dms_core::aws::load_config().await;
    let app = Arc::new(App {
        registry: Default::default(),
        region,
        cas,
        cloudwatch: Some(aws_sdk_cloudwatch::Client::new(&config)),
        psql: dms_local::full_load::find_psql(),
        ca_file,
    });
    let (stop_engine, engine_stopped) = tokio::sync::watch::channel(false);
    let engine = tokio::spawn(replication::run(Arc::clone(&app), engine_stopped));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(%listen, "dms-local listening");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = stop_engine.send(true);
    engine.await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
