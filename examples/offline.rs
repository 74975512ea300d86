//! A handle keeps editing while the server is away: it says it is offline, its
//! futures give up at their deadline while the edits stay queued (and saved to a
//! file), and when the server is back everything is sent, once.
//!
//!     cargo run --example offline
//!
//! Starts its own server on a temporary SQLite file, stops it, and starts it again.

use std::time::Duration;

use session_service::{
    app::Application,
    client::{
        ClientError, Credentials, FileQueue, OptimisticOptions, OptimisticSession, SessionClient, SyncStatus,
        create_request, ops,
    },
    config::Settings,
};
use tokio::{sync::oneshot, task::JoinHandle};

/// Starts the server on `settings`; send on the returned channel to stop it.
async fn serve(
    settings: Settings,
) -> Result<(oneshot::Sender<()>, JoinHandle<()>), Box<dyn std::error::Error>> {
    let app = Application::build(settings).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        let _ = app
            .run_until(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((stop, running))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut settings = Settings::default();
    settings.server.listen = ([127, 0, 0, 1], port).into();
    settings.database.url = format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display());
    let (stop, running) = serve(settings.clone()).await?;

    let client = SessionClient::connect(format!("http://127.0.0.1:{port}"))
        .await?
        .with_credentials(Credentials::UserId(7));
    let session = client
        .create(create_request(1, 10, &serde_json::json!({})))
        .await?;
    let options = OptimisticOptions {
        deadline: Some(Duration::from_secs(1)),
        reconnect_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let handle = OptimisticSession::builder(client.clone())
        .options(options)
        .queue_store(FileQueue::new(dir.path().join("queue.json")))
        .start(session.clone())?;
    let mut status = handle.subscribe_status();
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            println!("  status: {:?}", *status.borrow());
        }
    });

    println!("the server stops");
    let _ = stop.send(());
    running.await?;
    for quest in ["q1", "q2", "q3"] {
        let answer = handle.apply(vec![ops::increment_quest_steps(quest, 1)]).await;
        match answer {
            Err(ClientError::Deadline { kept: true }) => {
                println!("{quest}: no answer in 1 s; kept in the queue")
            }
            other => println!("{quest}: {other:?}"),
        }
    }
    println!("shown meanwhile: {}", handle.state().flags["quests"]);

    println!("the server starts again");
    let (stop, running) = serve(settings).await?;
    let mut status = handle.subscribe_status();
    status.wait_for(|s| *s == SyncStatus::Online).await?;
    let server = client.get(session.id).await?;
    println!(
        "the server has: {} (version {})",
        server.flags["quests"], server.version
    );
    assert_eq!(server.version, 4, "each queued edit applied exactly once");
    let _ = stop.send(());
    running.await?;
    Ok(())
}
