//! Migrations: up → down → up keeps every session's data; `down` of versioning
//! drops only the version column.

mod common;

use common::*;
use sea_orm::{ConnectionTrait, Statement};
use session_service::store::Store;

backend_tests! {
    rolling_migrations_back_and_forth_keeps_existing_rows => back_and_forth;
}

async fn store(db: &TestDb) -> Store {
    // A fresh pool per phase: SQLite statements prepared before an ALTER TABLE must not be reused.
    let settings = common::store_settings(&db.url);
    Store::connect(&settings).await.expect("connects")
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    let db = store.migration_connection();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

async fn has_column(store: &Store, table: &str, column: &str) -> bool {
    let db = store.migration_connection();
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!(
            "SELECT COUNT(*)::bigint FROM information_schema.columns WHERE table_name = '{table}' AND column_name = '{column}'"
        ),
        _ => format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"),
    };
    scalar(store, &sql).await == 1
}

/// The TOAST compression of the four JSON documents ('l' lz4, '-' the default).
async fn compression(store: &Store) -> String {
    let db = store.migration_connection();
    let sql = "SELECT a.attname::text, a.attcompression::text FROM pg_attribute a
        WHERE (a.attrelid, a.attname) IN (('game_sessions'::regclass, 'flags'),
          ('game_sessions'::regclass, 'relationships'), ('session_events'::regclass, 'diff'),
          ('request_ids'::regclass, 'snapshot'))
        ORDER BY a.attrelid::regclass::text, a.attname";
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .expect("query");
    assert_eq!(rows.len(), 4, "four documents");
    rows.iter()
        .map(
            |r| match r.try_get_by_index::<String>(1).expect("a method").as_str() {
                "" => '-',
                m => m.chars().next().expect("one letter"),
            },
        )
        .collect()
}

async fn back_and_forth(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    for gold in 0..3 {
        create(&mut c, 1, serde_json::json!({ "gold": gold })).await;
    }
    app.stop().await;

    let s = store(&app.db).await;
    let applied = s.migration_status().await.unwrap();
    assert!(applied.iter().all(|m| m.applied), "{applied:?}");
    if backend == Backend::Postgres {
        assert_eq!(compression(&s).await, "llll", "lz4 on every JSON document");
    }
    // Down the lz4 documents: the columns go back to the server's default.
    s.migrate_down(1).await.unwrap();
    if backend == Backend::Postgres {
        assert_eq!(compression(&s).await, "----");
    }
    s.migrate_down(1).await.unwrap();
    s.close().await;

    let s = store(&app.db).await;
    assert_eq!(scalar(&s, "SELECT COUNT(*) FROM game_sessions").await, 3);
    assert!(!has_column(&s, "game_sessions", "rules_version").await);
    s.migrate_up(None).await.unwrap();
    s.close().await;

    // Down past add_session_versioning: only `version` goes, the data stays.
    let s = store(&app.db).await;
    s.migrate_down(5).await.unwrap();
    s.close().await;
    let s = store(&app.db).await;
    let status = s.migration_status().await.unwrap();
    assert_eq!(status.iter().filter(|m| m.applied).count(), 1);
    assert!(!has_column(&s, "game_sessions", "version").await);
    assert!(has_column(&s, "game_sessions", "flags").await);
    assert_eq!(scalar(&s, "SELECT COUNT(*) FROM game_sessions").await, 3);
    s.migrate_up(None).await.unwrap();
    s.close().await;

    let s = store(&app.db).await;
    assert_eq!(
        scalar(&s, "SELECT COUNT(*) FROM game_sessions WHERE version = 1").await,
        3
    );
    s.close().await;

    // The service works on the re-migrated database, with the old rows.
    let again = TestApp::start(app.db, app.settings.clone()).await;
    let mut c = again.client().await;
    let listed = c
        .list_sessions(as_user(1, session_service::pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let golds: Vec<_> = listed
        .sessions
        .iter()
        .map(|s| json(&s.flags)["gold"].clone())
        .collect();
    assert_eq!(
        golds,
        vec![serde_json::json!(2), serde_json::json!(1), serde_json::json!(0)]
    );
    again.finish().await;
}
