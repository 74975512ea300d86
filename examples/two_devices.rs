//! Two devices change one session at the same moment; the client resolves the
//! conflict and both end equal to the server.
//!
//!     cargo run --example two_devices
//!
//! Starts its own server on a temporary SQLite file, so it needs nothing else.

use std::time::Duration;

use session_service::{
    app::Application,
    client::{Credentials, OptimisticOptions, OptimisticSession, SessionClient, create_request, ops},
    config::Settings,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::default();
    settings.server.listen = ([127, 0, 0, 1], 0).into();
    settings.database.url = format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display());
    let app = Application::build(settings).await?;
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    let phone = SessionClient::connect(url.clone())
        .await?
        .with_credentials(Credentials::UserId(7));
    let laptop = SessionClient::connect(url)
        .await?
        .with_credentials(Credentials::UserId(7));
    let session = phone
        .create(create_request(1, 10, &serde_json::json!({})))
        .await?;
    println!("session {} at version {}", session.id, session.version);

    let options = OptimisticOptions::default();
    let on_phone = OptimisticSession::from_session(phone.clone(), session.clone(), options.clone());
    let on_laptop = OptimisticSession::from_session(laptop.clone(), session.clone(), options);

    // Both start from version 1 and change the same inventory at the same time.
    let a = on_phone.apply(vec![ops::add_inventory_item("potion", 1)]);
    let b = on_laptop.apply(vec![
        ops::add_inventory_item("potion", 2),
        ops::trigger_event("found_stash"),
    ]);
    println!("phone shows   {}", on_phone.state().flags["inventory"]);
    println!("laptop shows  {}", on_laptop.state().flags["inventory"]);
    let (a, b) = tokio::join!(a, b);
    println!("phone write   -> version {}", a?.version);
    println!("laptop write  -> version {}", b?.version);
    let conflicts = phone.stats().conflicts + laptop.stats().conflicts;
    println!("conflicts resolved by re-applying on the server's state: {conflicts}");

    // Watch streams bring each device the other's write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server_state = phone.get(session.id).await?;
    println!(
        "server        {} (version {})",
        server_state.flags["inventory"], server_state.version
    );
    assert_eq!(on_phone.state(), server_state);
    assert_eq!(on_laptop.state(), server_state);
    println!("both devices equal the server");

    let _ = stop.send(());
    server.await??;
    Ok(())
}
