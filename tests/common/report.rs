//! Figures of the reliability tests, for RELIABILITY.md (scripts/reliability.sh sets
//! RELIABILITY_REPORT_DIR; elsewhere they are only printed).

pub fn record(name: &str, figures: serde_json::Value) {
    eprintln!("{name}: {figures}");
    if let Ok(dir) = std::env::var("RELIABILITY_REPORT_DIR") {
        let path = std::path::Path::new(&dir).join(format!("{name}.json"));
        std::fs::write(path, serde_json::to_string_pretty(&figures).unwrap()).expect("report written");
    }
}
